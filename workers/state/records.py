"""SessionInfo: the per-session summary row, its byte encoding, and the only two ways a row
changes: :func:`merge_row` (a commit adds entries) and :func:`shrink_row` (retention drops
entries).  Pure; no I/O.

Invariants (kept here, by those two functions):

* ``first`` / ``last`` are the earliest / latest locations in log order (segment, position)
  among the session's indexed entries, so retention (dropping the oldest segments) moves
  ``first`` and ``count``; ``count`` is the number of its indexed entries; the entries
  themselves are read in seq order with ``PartitionStore.locations``;
* ``last_seq`` is the greatest seq ever indexed for the session and never moves backwards,
  not even when retention drops that entry (dedupe relies on it);
* ``first_ts_ms`` / ``last_ts_ms`` are the least / greatest event timestamps seen;
* ``agent`` is the latest agent seen, ``model`` the latest non-null model seen;
* the value encoding starts with a version byte; the session id and partition are not
  stored in the value (they are the key and the store).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from workers.hotlog import Location

VALUE_VERSION = 1
_HEAD = struct.Struct(">B16s16sQqqqH")
_MODEL_LEN = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    partition: int
    first: Location
    last: Location
    count: int
    last_seq: int
    first_ts_ms: int
    last_ts_ms: int
    agent: str
    model: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "partition": self.partition,
            "first": _loc_json(self.first),
            "last": _loc_json(self.last),
            "count": self.count,
            "last_seq": self.last_seq,
            "first_ts_ms": self.first_ts_ms,
            "last_ts_ms": self.last_ts_ms,
            "agent": self.agent,
            "model": self.model,
        }


def _loc_json(loc: Location) -> dict[str, int]:
    return {"segment": loc.segment, "position": loc.position, "length": loc.length}


def encode_fields(
    first: bytes,
    last: bytes,
    count: int,
    last_seq: int,
    first_ts_ms: int,
    last_ts_ms: int,
    agent: str,
    model: str | None,
) -> bytes:
    """Encode from already-packed locations (the commit path has them packed)."""
    a = agent.encode()
    head = _HEAD.pack(VALUE_VERSION, first, last, count, last_seq, first_ts_ms, last_ts_ms, len(a))
    if model is None:
        return head + a + _MODEL_LEN.pack(-1)
    m = model.encode()
    return head + a + _MODEL_LEN.pack(len(m)) + m


class Row(NamedTuple):
    """The fields of an encoded row, locations still packed (they compare in log order)."""

    first: bytes
    last: bytes
    entries: int
    last_seq: int
    first_ts_ms: int
    last_ts_ms: int
    agent: str
    model: str | None


def _decode_row(data: bytes) -> Row:
    version, first, last, count, last_seq, first_ts, last_ts, alen = _HEAD.unpack_from(data)
    if version != VALUE_VERSION:
        raise ValueError(f"unknown SessionInfo version {version}")
    at = _HEAD.size
    agent = data[at : at + alen].decode()
    at += alen
    (mlen,) = _MODEL_LEN.unpack_from(data, at)
    at += _MODEL_LEN.size
    model = None if mlen < 0 else data[at : at + mlen].decode()
    return Row(first, last, count, last_seq, first_ts, last_ts, agent, model)


def decode_info(session_id: str, partition: int, data: bytes) -> SessionInfo:
    row = _decode_row(data)
    return SessionInfo(
        session_id,
        partition,
        Location.unpack(row.first),
        Location.unpack(row.last),
        row.entries,
        row.last_seq,
        row.first_ts_ms,
        row.last_ts_ms,
        row.agent,
        row.model,
    )


def decode_last_seq(data: bytes) -> int:
    """Only ``last_seq`` of an encoded SessionInfo (the dedupe cache needs nothing else)."""
    return int(_HEAD.unpack_from(data)[4])


def merge_row(old: bytes | None, added: Row) -> bytes:
    """The row after a commit adds the entries summed up in ``added`` to the row ``old``.

    ``added`` holds the least / greatest packed locations added, how many entries are new,
    the greatest seq and the least / greatest timestamps added, and the latest agent and
    model (model None when none carried one).  ``old`` is None for a session the index
    does not hold yet.
    """
    if old is None:
        return encode_fields(*added)
    row = _decode_row(old)
    return encode_fields(
        added.first if added.first < row.first else row.first,
        added.last if added.last > row.last else row.last,
        row.entries + added.entries,
        added.last_seq if added.last_seq > row.last_seq else row.last_seq,
        added.first_ts_ms if added.first_ts_ms < row.first_ts_ms else row.first_ts_ms,
        added.last_ts_ms if added.last_ts_ms > row.last_ts_ms else row.last_ts_ms,
        added.agent,
        added.model if added.model is not None else row.model,
    )


def shrink_row(old: bytes, removed: int, first: bytes, last: bytes) -> bytes | None:
    """The row after retention removed ``removed`` entries; None when none is left.

    ``first`` / ``last`` are the least / greatest packed locations of the entries left
    (empty when none is).  ``last_seq`` is kept: dedupe relies on it never moving back.
    """
    if not first:
        return None
    row = _decode_row(old)
    return encode_fields(
        first,
        last,
        max(row.entries - removed, 0),
        row.last_seq,
        row.first_ts_ms,
        row.last_ts_ms,
        row.agent,
        row.model,
    )
