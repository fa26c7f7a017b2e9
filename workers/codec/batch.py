"""Many events in one Kafka message: the batch format.

    batch   := MAGIC (4 bytes "KZB1") | count (u32 BE) | item * count
    item    := length (u32 BE) | single-object-encoded event (length bytes)

A plain single-object message starts with C3 01, a batch with "KZB1" (4B 5A
42 31), so the two are told apart by their first bytes and any Avro-capable
producer can write plain events beside our batches. The shipper puts events of
one session in one batch, in seq order; the worker checks the framing before
it trusts any item (`split` raises DecodeError on a count or length that does
not add up exactly).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from workers.codec.errors import DecodeError
from workers.codec.single_object import MARKER

MAGIC = b"KZB1"
_HEAD = struct.Struct(">4sI")
_LEN = struct.Struct(">I")
MAX_ITEMS = 1 << 20


def is_batch(message: bytes) -> bool:
    return message[:4] == MAGIC


def is_single(message: bytes) -> bool:
    return message[:2] == MARKER


def join(items: Sequence[bytes]) -> bytes:
    """One batch message holding `items` (each a single-object-encoded event)."""
    parts = [_HEAD.pack(MAGIC, len(items))]
    for item in items:
        parts.append(_LEN.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def split(message: bytes) -> list[bytes]:
    """The items of a batch message; DecodeError when the framing is off."""
    size = len(message)
    if size < _HEAD.size or message[:4] != MAGIC:
        raise DecodeError("bad_batch", "missing KZB1 header")
    _, count = _HEAD.unpack_from(message, 0)
    if count > MAX_ITEMS:
        raise DecodeError("bad_batch", f"count {count} over {MAX_ITEMS}")
    items: list[bytes] = []
    pos = _HEAD.size
    unpack = _LEN.unpack_from
    for i in range(count):
        if pos + 4 > size:
            raise DecodeError("bad_batch", f"item {i} of {count}: length cut off")
        (length,) = unpack(message, pos)
        pos += 4
        end = pos + length
        if end > size:
            raise DecodeError(
                "bad_batch", f"item {i} of {count}: {length} bytes, {size - pos} left"
            )
        items.append(message[pos:end])
        pos = end
    if pos != size:
        raise DecodeError("bad_batch", f"{size - pos} bytes after the last of {count} items")
    return items
