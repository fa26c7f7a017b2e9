"""Frame encoding, decoding and resync: pure functions over bytes-like buffers, no I/O.

A frame is::

    +----------------+----------------+-------------------+----------------+
    | length  u32 BE | offset  u64 BE | payload (length)  | crc32c  u32 BE |
    +----------------+----------------+-------------------+----------------+

``payload`` is one Avro single-object-encoded event, ``offset`` the Kafka offset of the message
that carried it (several frames may share one offset), and the CRC-32C trailer covers the 12
header bytes and the payload.  The offset makes the log self-describing (an index and the
partition watermark can be rebuilt from the log alone) and gives resync a cheap filter.

Invariants:

* a frame is *good* when ``0 <= length <= MAX_PAYLOAD``, the frame lies inside the scanned
  range, ``min_offset <= offset < min_offset + MAX_OFFSET_SPAN`` and the CRC matches; only
  good frames are ever returned;
* :func:`iter_frames` visits a range exactly once, as a sequence of good frames and bad ranges
  that tile it without gaps; a bad range ends at the next good frame (resync) or at the end of
  the range, in which case it is flagged ``at_end`` (a torn tail when the range ends at EOF);
* every frame :func:`encode_batch` writes is good: a payload over ``MAX_PAYLOAD`` raises
  ValueError and an offset outside ``[0, 2**64)`` OverflowError, before anything is built.

Speed-up: ``encode_batch`` and ``locations`` are the C versions from
``workers/hotlog/_cframe.c`` when it is built and not disabled (``workers.speedups``:
``KAIZEN_PURE_PYTHON=1`` or ``=cframe``), else the pure-Python ``_py_*`` functions below, which
stay the reference: both give the same results and raise the same exception types
(tests/hotlog/test_cframe.py).  ``IMPLEMENTATION`` says which one runs.  Every CRC-32C outside
the C frame encoder comes from the crc32c package (``crc32c`` below).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, chain, repeat
from operator import add

from crc32c import crc32c  # CRC-32C of data, continuing from crc (a previous result)

from workers import speedups
from workers.errors import HotLogError
from workers.hotlog.policy import Location

HEAD = struct.Struct(">IQ")
TRAILER = struct.Struct(">I")
HEAD_SIZE = HEAD.size  # 12
OVERHEAD = HEAD.size + TRAILER.size  # 16 bytes per frame
_pack_crc = TRAILER.pack
_OVERHEAD_ADD = OVERHEAD.__add__
_pack_len = TRAILER.pack  # ">I", the length field
MAX_PAYLOAD = 64 << 20  # also in _cframe.c
# Offsets inside one segment never run this far past its base offset; bytes that claim to are
# not a frame.  It rejects almost every false resync candidate before a CRC is computed.
MAX_OFFSET_SPAN = 1 << 48

_ZERO4 = bytes(4)
_ZERO_SKIP = 1 << 20

Buffer = bytes | bytearray | memoryview | mmap.mmap


_c = speedups.load("workers.hotlog._cframe")


class CorruptFrame(HotLogError):
    """A frame failed its length or CRC check."""


def encode(payload: bytes, offset: int) -> bytes:
    """One frame for ``payload`` carried by the Kafka message at ``offset``."""
    head = HEAD.pack(len(payload), offset)
    crc = crc32c(payload, crc32c(head))
    return b"".join((head, payload, TRAILER.pack(crc)))


class _LengthBytes(dict[int, bytes]):
    """Payload length -> its 4 length bytes, filled on first use; bounded (cleared when big)."""

    def __missing__(self, length: int) -> bytes:
        if len(self) >= _LENGTH_CACHE_MAX:
            self.clear()
        packed = self[length] = _pack_len(length)
        return packed


_LENGTH_CACHE_MAX = 1 << 14
_length_bytes = _LengthBytes().__getitem__


def _py_encode_batch(payloads: Sequence[bytes], offset: int) -> tuple[bytes, list[int]]:
    """All frames of one message as one buffer, plus each payload's length.

    The hot path of ingest, all driven by ``map`` (no interpreted loop body).  Per frame:
    the frame body ``length + offset + payload`` in one ``bytes.join`` call (the offset bytes,
    shared by the whole batch, are the separator; the length bytes come from a cache), one
    ``crc32c`` over the body and one trailer pack; then one join of the batch.  Copying a
    ~300-byte payload into the body is cheaper than the alternative, a second ``crc32c``
    call per frame for the head.

    Payloads are bytes-like with 1-byte items (``len`` is their size in bytes); anything else
    raises TypeError.  A payload over ``MAX_PAYLOAD`` raises ValueError (it would be written,
    then read back as a bad frame); an offset outside ``[0, 2**64)`` raises OverflowError.
    """
    off = int.to_bytes(offset, 8, "big")  # TypeError / OverflowError, as the C version
    lens = list(map(len, payloads))
    if lens and max(lens) > MAX_PAYLOAD:
        raise ValueError(f"a payload is {max(lens)} bytes, over the {MAX_PAYLOAD}-byte limit")
    bodies = list(map(off.join, zip(map(_length_bytes, lens), payloads, strict=True)))
    trailers = map(_pack_crc, map(crc32c, bodies))
    return b"".join(chain.from_iterable(zip(bodies, trailers, strict=True))), lens


encode_batch: Callable[[Sequence[bytes], int], tuple[bytes, list[int]]] = (
    _py_encode_batch if _c is None else _c.encode_batch
)


_new_tuple = tuple.__new__


def _py_locations(segment: int, start: int, lens: list[int]) -> list[Location]:
    """``Location(segment, p, n)`` for consecutive frames of payload lengths ``lens`` at
    ``start`` (what ``PartitionLog.append_batch`` returns): positions by ``accumulate``, the
    named tuples by ``tuple.__new__`` in one C-level ``map`` (the generated
    ``Location.__new__`` is a Python function; this skips it)."""
    return list(
        map(
            _new_tuple,
            repeat(Location),
            zip(
                repeat(segment),
                accumulate(map(add, lens, repeat(OVERHEAD)), initial=start),
                lens,
            ),
        )
    )


# the C version raises OverflowError past 2**63 (positions are u32, see MAX_SEGMENT_BYTES)
locations: Callable[[int, int, list[int]], list[Location]] = (
    _py_locations if _c is None else partial(_c.locations, Location)
)

IMPLEMENTATION = "pure Python" if _c is None else "C (workers/hotlog/_cframe.c)"


def positions(lens: list[int], start: int) -> list[int]:
    """Start positions of consecutive frames with payload lengths ``lens`` from ``start``."""
    out = list(accumulate(map(_OVERHEAD_ADD, lens), initial=start))
    out.pop()
    return out


def check(
    buf: Buffer, pos: int, end: int, min_offset: int, span: int = MAX_OFFSET_SPAN
) -> tuple[int, int] | None:
    """``(length, offset)`` of the good frame at ``pos`` of ``buf[:end]``, else None.

    The frame's offset must lie in ``[min_offset, min_offset + span)``.
    """
    if pos + OVERHEAD > end:
        return None
    length, offset = HEAD.unpack_from(buf, pos)
    stop = pos + HEAD_SIZE + length
    if length > MAX_PAYLOAD or stop + TRAILER.size > end:
        return None
    if not min_offset <= offset < min_offset + span:
        return None
    (stored,) = TRAILER.unpack_from(buf, stop)
    if crc32c(memoryview(buf)[pos:stop]) != stored:
        return None
    return length, offset


def decode(frame: Buffer) -> tuple[int, bytes]:
    """``(offset, payload)`` of a buffer holding exactly one frame; raises CorruptFrame."""
    got = check(frame, 0, len(frame), 0, 1 << 64)
    if got is None or got[0] + OVERHEAD != len(frame):
        raise CorruptFrame("frame fails its length or CRC check")
    return got[1], bytes(memoryview(frame)[HEAD_SIZE : HEAD_SIZE + got[0]])


@dataclass(frozen=True, slots=True)
class Good:
    """A good frame at ``position``: payload ``buffer[position+12 : position+12+length]``."""

    position: int
    length: int
    offset: int


@dataclass(frozen=True, slots=True)
class Bad:
    """Bytes ``[start, end)`` that hold no good frame; ``at_end``: the range runs to the end."""

    start: int
    end: int
    at_end: bool


def resync(buf: Buffer, pos: int, end: int, min_offset: int) -> int | None:
    """Position of the next good frame at or after ``pos``, or None when there is none."""
    unpack = HEAD.unpack_from
    last = end - OVERHEAD
    span_end = min_offset + MAX_OFFSET_SPAN
    view = memoryview(buf)
    while pos <= last:
        length, offset = unpack(buf, pos)
        if length == 0 and offset == 0 and view[pos + HEAD_SIZE : pos + OVERHEAD] == _ZERO4:
            # zero-filled space (preallocated or never written after a crash): no frame starts
            # in a run of 16 zero bytes, so skip the run in C rather than byte by byte.
            chunk = bytes(view[pos : min(end, pos + _ZERO_SKIP)])
            run = len(chunk) - len(chunk.lstrip(b"\0"))
            pos += max(1, run - OVERHEAD + 1)
            continue
        # cheap filters first: almost no random position passes them
        if (
            length <= MAX_PAYLOAD
            and min_offset <= offset < span_end
            and pos + OVERHEAD + length <= end
            and check(buf, pos, end, min_offset) is not None
        ):
            return pos
        pos += 1
    return None


def iter_frames(buf: Buffer, pos: int, end: int, min_offset: int) -> Iterator[Good | Bad]:
    """Good frames and bad ranges of ``buf[pos:end]`` in order, resyncing past damage.

    ``min_offset`` is the least acceptable Kafka offset (the segment's base offset).
    """
    while pos < end:
        got = check(buf, pos, end, min_offset)
        if got is not None:
            length, offset = got
            yield Good(pos, length, offset)
            pos += length + OVERHEAD
            continue
        nxt = resync(buf, pos + 1, end, min_offset)
        if nxt is None:
            yield Bad(pos, end, True)
            return
        yield Bad(pos, nxt, False)
        pos = nxt
