"""The durable checkpoint of one partition directory: a ``(segment, position)`` known durable.

Opening a log scans only from the checkpoint, so recovery costs what was written since the
last checkpoint, not the size of the log.

Invariants: the file is replaced atomically (write tmp, fsync, rename, fsync dir); it only
names a position whose bytes were fsynced before it was written; an unreadable or
CRC-failing checkpoint is ignored (recovery then scans the whole active segment).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c

from workers.durable import atomic_write

NAME = "checkpoint"
_MAGIC = b"KZCKPT01"
# magic, segment, position, last offset (+1, 0 = none), crc32c of what precedes it
_BODY = struct.Struct(">8sQQQ")
_CRC = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    segment: int
    position: int
    last_offset: int | None  # greatest Kafka offset in the log before ``position``


def encode(ckpt: Checkpoint) -> bytes:
    last = 0 if ckpt.last_offset is None else ckpt.last_offset + 1
    body = _BODY.pack(_MAGIC, ckpt.segment, ckpt.position, last)
    return body + _CRC.pack(crc32c.crc32c(body))


def decode(data: bytes) -> Checkpoint | None:
    if len(data) != _BODY.size + _CRC.size:
        return None
    body = data[: _BODY.size]
    if crc32c.crc32c(body) != _CRC.unpack_from(data, _BODY.size)[0]:
        return None
    magic, segment, position, last = _BODY.unpack(body)
    if magic != _MAGIC:
        return None
    return Checkpoint(segment, position, None if last == 0 else last - 1)


def load(directory: Path) -> Checkpoint | None:
    try:
        data = (directory / NAME).read_bytes()
    except FileNotFoundError:
        return None
    return decode(data)


def store(directory: Path, ckpt: Checkpoint) -> None:
    atomic_write(directory / NAME, encode(ckpt))
