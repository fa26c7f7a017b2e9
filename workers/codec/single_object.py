"""Avro single-object encoding: `C3 01` | 8-byte CRC-64-AVRO fingerprint (LE) | body.

A `SingleObjectCodec` encodes with the current schema and decodes bytes
written with any known version of it, resolving the writer schema to the
current reader schema (added fields take their defaults). Decoding never
raises anything but `DecodeError`, whose reason names what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer

from workers.codec import schema as schemas
from workers.codec.errors import DecodeError

MARKER = b"\xc3\x01"
HEADER_SIZE = 10

T = TypeVar("T")


def by_fingerprint(table: Mapping[bytes, T], data: bytes) -> T:
    """What `table` holds for the writer fingerprint in `data`'s header; DecodeError
    (too_short, bad_marker, unknown_schema) when the header is not one it knows."""
    if len(data) < HEADER_SIZE:
        raise DecodeError("too_short", f"{len(data)} bytes, a header alone is {HEADER_SIZE}")
    if data[:2] != MARKER:
        raise DecodeError("bad_marker", f"starts with {data[:2].hex()}, not c301")
    found = table.get(data[2:HEADER_SIZE])
    if found is None:
        raise DecodeError("unknown_schema", f"fingerprint {data[2:HEADER_SIZE].hex()}")
    return found


class SingleObjectCodec:
    """Codec for one record type, e.g. `SingleObjectCodec("event")`."""

    def __init__(self, name: str) -> None:
        self.schema = schemas.current(name)
        self._writers = {s.fingerprint: s for s in schemas.history(name)}

    @property
    def fingerprint(self) -> bytes:
        return self.schema.fingerprint

    def encode(self, record: dict[str, Any]) -> bytes:
        out = BytesIO()
        out.write(MARKER)
        out.write(self.schema.fingerprint)
        schemaless_writer(out, self.schema.parsed, record)
        return out.getvalue()

    def writer_of(self, data: bytes) -> schemas.Schema:
        """The writer schema named by the header; DecodeError when unknown or not single-object."""
        return by_fingerprint(self._writers, data)

    def decode(self, data: bytes) -> dict[str, Any]:
        writer = self.writer_of(data)
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record: dict[str, Any] = schemaless_reader(body, writer.parsed, self.schema.parsed)  # type: ignore[assignment]
        except (EOFError, IndexError) as exc:
            raise DecodeError("truncated", str(exc) or type(exc).__name__) from None
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", str(exc)) from None
        except Exception as exc:  # fastavro raises many types on malformed bodies
            raise DecodeError("malformed", f"{type(exc).__name__}: {exc}") from None
        if body.tell() != len(data):
            raise DecodeError("trailing_bytes", f"{len(data) - body.tell()} bytes after the record")
        return record
