"""Key layout of a partition's index.  Pure functions over bytes; no I/O.

One RocksDB keyspace (raw bytes), split by a one-byte table prefix:

* ``00 <name>``                         metadata: watermark, counters, format, markers
* ``01 <session_id utf-8>``             SessionInfo (see :mod:`workers.state.records`)
* ``02 <u16 len> <session_id> <u64 seq> <producer utf-8>``
                                        (session_id, producer, seq) -> packed Location (16 bytes)

Invariants:

* every integer in a key is big-endian, so byte order is numeric order; ``seq`` (an Avro
  ``long``) is stored as ``seq + 2**63`` so negative seqs sort before positive ones too;
  iterating a session's entry prefix therefore yields its entries by seq, then producer
  (``""`` first): the replay order of a session fed by several producers;
* the producer follows the seq and is empty for events keyed by their content and for every
  event written before schema v2, so an entry of producer ``""`` has exactly the key of
  format 1, which had no producer: an index of format 1 is read as it is (no migration);
* a producer id is UTF-8, whose bytes never include ``ff``, so ``entry_prefix_end`` still
  bounds every key of a session;
* the session id in an entry key is length-prefixed, so no session's prefix is a prefix of
  another session's (``"a"`` never iterates into ``"ab"``);
* every entry key of a session lies in ``[entry_prefix(s), entry_prefix_end(s))``.
"""

from __future__ import annotations

import struct

META = b"\x00"
SESSION = b"\x01"
ENTRY = b"\x02"
ENTRY_END = b"\x03"  # exclusive upper bound of the entry table

WATERMARK_KEY = META + b"watermark"  # >q: last Kafka offset durably in the log, -1 for none
ENTRIES_KEY = META + b"entries"  # >Q: number of (session, producer, seq) entries
SESSIONS_KEY = META + b"sessions"  # >Q: number of sessions
MAX_LOCATION_KEY = META + b"max_location"  # packed Location: the greatest one ever indexed
FORMAT_KEY = META + b"format"  # >H: FORMAT_VERSION of this layout
INCARNATION_KEY = META + b"incarnation"  # utf-8: the broker incarnation the watermark is for

FORMAT_VERSION = 1  # unchanged by the producer suffix: format 1 keys are its producer "" keys

SEQ_BIAS = 1 << 63
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
SEQ_SIZE = _U64.size
_MAX_ID = 0xFFFF


def pack_i64(value: int) -> bytes:
    return _I64.pack(value)


def unpack_i64(data: bytes) -> int:
    return int(_I64.unpack(data)[0])


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u64(data: bytes) -> int:
    return int(_U64.unpack(data)[0])


def pack_seq(seq: int) -> bytes:
    """The 8 bytes of ``seq`` in an entry key (order-preserving for signed 64-bit values)."""
    return _U64.pack(seq + SEQ_BIAS)


def unpack_seq(data: bytes) -> int:
    return int(_U64.unpack(data)[0]) - SEQ_BIAS


def session_key(session_id: str) -> bytes:
    return SESSION + session_id.encode()


def session_id_of(key: bytes) -> str:
    """The session id of a :func:`session_key`."""
    return key[1:].decode()


def entry_prefix(session_id: str) -> bytes:
    raw = session_id.encode()
    if len(raw) > _MAX_ID:
        raise ValueError(f"session id longer than {_MAX_ID} bytes")
    return ENTRY + _U16.pack(len(raw)) + raw


def entry_prefix_end(prefix: bytes) -> bytes:
    """Exclusive upper bound of every key under ``prefix``: each is ``prefix`` + 8 bytes of
    seq + a producer in UTF-8 (never an ``ff`` byte)."""
    return prefix + b"\xff" * (SEQ_SIZE + 1)


def entry_key(session_id: str, seq: int, producer: str = "") -> bytes:
    return entry_prefix(session_id) + pack_seq(seq) + producer.encode()


def entry_prefix_of(key: bytes) -> bytes:
    """The session prefix (:func:`entry_prefix`) of an entry key."""
    return key[: 3 + _U16.unpack_from(key, 1)[0]]


def split_entry(key: bytes, cut: int) -> tuple[int, str]:
    """(seq, producer) of an entry key whose session prefix is ``cut`` bytes long."""
    return unpack_seq(key[cut : cut + SEQ_SIZE]), key[cut + SEQ_SIZE :].decode()
