"""SessionInfo: the per-session summary row, and its byte encoding.  Pure; no I/O.

Invariants:

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


def encode_info(info: SessionInfo) -> bytes:
    return encode_fields(
        info.first.pack(),
        info.last.pack(),
        info.count,
        info.last_seq,
        info.first_ts_ms,
        info.last_ts_ms,
        info.agent,
        info.model,
    )


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


def decode_info(session_id: str, partition: int, data: bytes) -> SessionInfo:
    version, first, last, count, last_seq, first_ts, last_ts, alen = _HEAD.unpack_from(data)
    if version != VALUE_VERSION:
        raise ValueError(f"unknown SessionInfo version {version}")
    at = _HEAD.size
    agent = data[at : at + alen].decode()
    at += alen
    (mlen,) = _MODEL_LEN.unpack_from(data, at)
    at += _MODEL_LEN.size
    model = None if mlen < 0 else data[at : at + mlen].decode()
    return SessionInfo(
        session_id,
        partition,
        Location.unpack(first),
        Location.unpack(last),
        count,
        last_seq,
        first_ts,
        last_ts,
        agent,
        model,
    )


def decode_last_seq(data: bytes) -> int:
    """Only ``last_seq`` of an encoded SessionInfo (the dedupe cache needs nothing else)."""
    return int(_HEAD.unpack_from(data)[4])
