"""Value types of the hot log: locations, policies, reports.  Pure data, no I/O.

Invariants: ``Location.pack()`` is 16 bytes big-endian (``>QII``) so packed locations sort
like ``(segment, position)``; every type here is immutable except the mutable report lists.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

_LOCATION = struct.Struct(">QII")
_new_tuple = tuple.__new__


class Location(NamedTuple):
    """Where a frame is: its segment (base Kafka offset), start position and payload length.

    A named tuple, not a dataclass: ``append_batch`` makes one per frame, and a tuple subclass
    can be built for a whole batch by one C-level ``map(tuple.__new__, ...)`` or in C (see
    ``frame.locations``) at a fraction of a frozen dataclass's cost.  Immutable, hashable and
    compared by value like before; unlike a dataclass it is also a 3-tuple (it unpacks,
    orders like ``(segment, position, length)`` and equals the plain tuple of its fields).
    """

    segment: int
    position: int
    length: int

    def pack(self) -> bytes:
        return _LOCATION.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Location:
        return _new_tuple(cls, _LOCATION.unpack(data))


@dataclass(frozen=True)
class CommitPolicy:
    """Group commit: make pending work durable once it reaches any of these limits.

    The one flush policy: ``PartitionLog.should_flush`` and the ingest's group commit
    (``PartitionState.want_flush``, ``IngestConfig.commit``) both decide by :meth:`due`.
    ``max_messages`` bounds units only the caller counts (the ingest: Kafka messages
    awaiting their ack, skipped ones included); None for no such bound.
    """

    max_bytes: int = 1 << 20
    max_records: int = 10_000
    max_ms: float = 5.0
    max_messages: int | None = None

    def messages_full(self, messages: int) -> bool:
        return self.max_messages is not None and messages >= self.max_messages

    def due(self, records: int, nbytes: int, age_ms: float | None, messages: int = 0) -> bool:
        """Is pending work of ``records`` frames, ``nbytes`` bytes, ``messages`` messages,
        the oldest ``age_ms`` old (None: unknown), due for its commit?"""
        return (
            records >= self.max_records
            or nbytes >= self.max_bytes
            or self.messages_full(messages)
            or (age_ms is not None and age_ms >= self.max_ms)
        )


@dataclass(frozen=True)
class RetentionPolicy:
    """Delete whole old segments older than ``max_age_s`` or beyond ``max_bytes`` in total."""

    max_age_s: float | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class BadRange:
    """Bytes ``[start, end)`` of segment ``segment`` that hold no good frame."""

    segment: int
    start: int
    end: int
    reason: str


@dataclass
class RecoveryReport:
    """What opening a partition log found and did."""

    truncated_bytes: int = 0
    bad_ranges: list[BadRange] = field(default_factory=list)
    scanned_from: Location | None = None  # where the recovery scan started (length 0)
    scanned_bytes: int = 0
    frames_scanned: int = 0
    removed_segments: list[int] = field(default_factory=list)  # empty or torn-at-birth segments


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    base: int
    path: Path
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class Entry:
    """A good frame with the Kafka offset recorded in it (for index rebuilds)."""

    location: Location
    offset: int
    payload: bytes
