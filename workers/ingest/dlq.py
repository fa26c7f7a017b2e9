"""Dead-letter records: what goes to ``kaizen.events.dlq`` for a message or event we reject.

Invariants: the value is the rejected bytes alone (one event of a batch, or the
whole message when it could not be split), cut to ``MAX_DLQ_VALUE`` bytes so a
huge event never fails the dead-letter produce itself (header
``original_size`` then says how big it was); headers always carry reason,
detail, source topic, partition and offset (as UTF-8 text).
"""

from __future__ import annotations

from typing import NamedTuple

MAX_DLQ_VALUE = 256 << 10
MAX_DETAIL = 500


class DeadLetter(NamedTuple):
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(
    *,
    reason: str,
    detail: str,
    data: bytes,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None = None,
    index: int | None = None,
) -> DeadLetter:
    """The dead-letter record of one rejected message or event."""
    headers = [
        ("reason", reason.encode()),
        ("detail", detail[:MAX_DETAIL].encode("utf-8", "replace")),
        ("source_topic", topic.encode()),
        ("partition", str(partition).encode()),
        ("offset", str(offset).encode()),
    ]
    if index is not None:
        headers.append(("index", str(index).encode()))
    value = data
    if len(data) > MAX_DLQ_VALUE:
        headers.append(("original_size", str(len(data)).encode()))
        value = data[:MAX_DLQ_VALUE]
    return DeadLetter(key, value, headers)


def header_dict(headers: object) -> dict[str, str]:
    """Headers of a consumed DLQ record as text (for tests and tools)."""
    out: dict[str, str] = {}
    for name, value in headers or ():  # type: ignore[attr-defined]
        out[str(name)] = bytes(value).decode("utf-8", "replace")
    return out
