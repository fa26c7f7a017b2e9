"""The Event record: field names, defaults, and the codec for the current schema.

Events are plain dicts with the schema's field names (that is what fastavro
reads and writes, and what `replay` prints). `complete_event` fills every
field the caller left out with the schema's default, so producers only name
what they know.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from workers.codec import schema as schemas
from workers.codec.single_object import SingleObjectCodec

Event = dict[str, Any]

KINDS = ("tool_call", "tool_result", "message", "error", "cost", "hook", "lifecycle")
SOURCES = ("hook", "tail", "proxy", "import")
AGENTS = ("claude", "cursor", "codex", "other")


@cache
def codec() -> SingleObjectCodec:
    return SingleObjectCodec("event")


@cache
def field_defaults() -> dict[str, Any]:
    """Field name -> default, for every field of the current schema that has one."""
    return {
        f["name"]: f["default"] for f in schemas.current("event").raw["fields"] if "default" in f
    }


@cache
def field_names() -> tuple[str, ...]:
    return tuple(f["name"] for f in schemas.current("event").raw["fields"])


def complete_event(fields: dict[str, Any]) -> Event:
    """A full Event from the fields given; the schema's defaults fill the rest.

    Unknown names are an error: they would be silently dropped by the encoder.
    """
    unknown = fields.keys() - set(field_names())
    if unknown:
        raise ValueError(f"not fields of Event: {', '.join(sorted(unknown))}")
    event = dict(field_defaults())
    event.update(fields)
    return event


def encode_event(event: Event) -> bytes:
    return codec().encode(event)


def decode_event(data: bytes) -> Event:
    return codec().decode(data)
