"""One segment file: naming, header, creation, mapped scans and tail recovery.

A segment is ``<base offset, 20 digits>.seg``: a fixed 512-byte header followed by frames
(see :mod:`workers.hotlog.frame`).  The header is::

    magic "KZHOTLOG" | version u16 | partition u32 | base offset u64 | topic length u16 |
    topic (UTF-8) | zero padding | crc32c u32 of bytes [0, 508)

Invariants:

* the header is written and fsynced (file and directory) before any frame is appended, so a
  segment whose header is short or bad and that holds no frame is a torn creation;
* every frame of a segment carries an offset ``>= base``; frames start at ``HEADER_SIZE``;
* a segment other than the last one of its directory is *sealed*: it was fsynced whole before
  the next one was created, so recovery only ever has to look at the last segment.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import crc32c

from workers.durable import fsync_dir
from workers.hotlog import frame

SUFFIX = ".seg"
HEADER_SIZE = 512
VERSION = 1
MAGIC = b"KZHOTLOG"
_HEAD = struct.Struct(">8sHIQH")
_CRC = struct.Struct(">I")
_NAME = re.compile(r"^(\d{20})\.seg$")
MAX_TOPIC = HEADER_SIZE - _HEAD.size - _CRC.size


def name(base: int) -> str:
    return f"{base:020d}{SUFFIX}"


def parse_name(filename: str) -> int | None:
    m = _NAME.match(filename)
    return int(m.group(1)) if m else None


def list_bases(directory: Path) -> list[int]:
    bases = []
    for entry in os.scandir(directory):
        base = parse_name(entry.name)
        if base is not None and entry.is_file():
            bases.append(base)
    bases.sort()
    return bases


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    topic: str
    partition: int
    base: int


def encode_header(topic: str, partition: int, base: int) -> bytes:
    raw = topic.encode()
    if len(raw) > MAX_TOPIC:
        raise ValueError(f"topic name longer than {MAX_TOPIC} bytes")
    body = _HEAD.pack(MAGIC, VERSION, partition, base, len(raw)) + raw
    body = body.ljust(HEADER_SIZE - _CRC.size, b"\0")
    return body + _CRC.pack(crc32c.crc32c(body))


def decode_header(data: bytes | memoryview | mmap.mmap) -> Header | None:
    """The header at the start of ``data``, or None if it is short, foreign or damaged."""
    if len(data) < HEADER_SIZE:
        return None
    body = bytes(data[: HEADER_SIZE - _CRC.size])
    if crc32c.crc32c(body) != _CRC.unpack_from(data, HEADER_SIZE - _CRC.size)[0]:
        return None
    magic, version, partition, base, n = _HEAD.unpack_from(body)
    if magic != MAGIC or version != VERSION or n > MAX_TOPIC:
        return None
    try:
        topic = body[_HEAD.size : _HEAD.size + n].decode()
    except UnicodeDecodeError:
        return None
    return Header(version, topic, partition, base)


def create(directory: Path, topic: str, partition: int, base: int) -> int:
    """Create segment ``base`` with a durable header; return a write fd positioned after it."""
    path = directory / name(base)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, encode_header(topic, partition, base))
        os.fdatasync(fd)
        fsync_dir(directory)
    except BaseException:
        # leave no half-made segment behind: the next append creates it again
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)
    if n == len(data):  # the usual case: no memoryview needed
        return
    view = memoryview(data)[n:]
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Mapped:
    """A read-only mapping of ``[0, end)`` of a segment file (``end`` defaults to its size).

    Safe while the file grows (the mapping never covers bytes written after it was made);
    the file must not be truncated below ``end`` while mapped (a read there is SIGBUS).
    With ``copy`` the bytes are read into memory instead: for a reader that holds no lock
    (plain ``verify``), whose file a writer may truncate meanwhile.
    """

    def __init__(self, path: Path, end: int | None = None, *, copy: bool = False) -> None:
        self._map: mmap.mmap | None = None
        self.buf: mmap.mmap | bytes = b""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            self.size = size if end is None else min(end, size)
            if copy:
                self.buf = os.pread(fd, self.size, 0)
                self.size = len(self.buf)
            elif self.size:
                self._map = self.buf = mmap.mmap(fd, self.size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    def header(self) -> Header | None:
        return decode_header(self.buf)

    def frames(self, base: int, start: int = HEADER_SIZE) -> Iterator[frame.Good | frame.Bad]:
        return frame.iter_frames(self.buf, max(start, HEADER_SIZE), self.size, base)

    def payload(self, good: frame.Good) -> bytes:
        start = good.position + frame.HEAD_SIZE
        return self.buf[start : start + good.length]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self.buf = b""

    def __enter__(self) -> Mapped:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class TailScan:
    """The result of scanning a segment from a known-good position to its end."""

    end: int  # where good data ends: the file size after truncating a torn tail
    size: int  # the file size found
    frames: int
    last_offset: int | None
    bad: list[tuple[int, int]]  # mid-file bad ranges, skipped by resync
    tail: tuple[int, int] | None  # torn tail [start, size) or None


def scan_tail(path: Path, base: int, start: int) -> TailScan:
    """Scan ``path`` from ``start`` to EOF, classifying damage as mid-file or torn tail."""
    with Mapped(path) as m:
        frames = 0
        last: int | None = None
        bad: list[tuple[int, int]] = []
        tail: tuple[int, int] | None = None
        for item in m.frames(base, start):
            if isinstance(item, frame.Good):
                frames += 1
                last = item.offset
            elif item.at_end:
                tail = (item.start, item.end)
            else:
                bad.append((item.start, item.end))
        end = tail[0] if tail else max(m.size, HEADER_SIZE)
        return TailScan(end, m.size, frames, last, bad, tail)


def truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
