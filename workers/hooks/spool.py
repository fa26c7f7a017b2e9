"""The local spool: hooks append events, the shipper drains them. Stdlib only.

Location: `$KAIZEN_SPOOL_DIR`, default `$XDG_STATE_HOME/kaizen-stream/spool`
(`~/.local/state/kaizen-stream/spool`). Layout:

    lock               flock: held by a hook while it assigns a seq and appends,
                       and by the shipper while it seals the open segment
    seq/<session>      the session's next seq, 20 decimal digits
    producer           this spool's producer id: 16 random hex digits, made once
    seg/<n:020>.seg    segments of frames; hooks append to the highest n only
    commit             "<segment> <offset>": everything before it is acked by Kafka
    shipper.lock       held (flock) by the one running shipper
    warnings.log       spool-full drops and hook errors, one line each

Frame: MAGIC "KS" | length u32 BE | crc u32 BE | body (UTF-8 JSON of the Event
fields, seq included). The CRC is zlib.crc32 (stdlib, C code, already in
every Python): the crc32c package is a site-packages C extension, and the
lean hook (`python -I -S`) does not see site-packages nor want its load cost.

Invariants:
- seq: under `lock`, the hook writes seq+1 to seq/<session> (fsync) *before*
  appending the frame with seq (fsync). A crash in between leaves a gap, never
  a reused seq, so (session_id, producer, seq) is a unique key that retries keep.
- producer: every spool numbers a session's events from 0, so another machine (or
  a spool recreated after deletion) gives the same seqs again; the frame carries
  the spool's own `producer` id, made under `lock` the first time and kept (fsync,
  atomic rename), so the key is unique across spools and a resend keeps it. An
  event keyed by its content (`seq` passed to `append`: usage, import) has no
  producer (""), so every copy of it, from any machine, has one key.
- Only sealed segments (not the highest) are read by the shipper, so it never
  races a hook's write; a torn or corrupt frame (a hook killed mid-write) is
  skipped by scanning to the next MAGIC whose CRC checks, and reported.
- `commit` is replaced atomically (write tmp, fsync, rename, fsync dir) only
  after Kafka acknowledged everything before it; segments wholly before it are
  deleted. A crash resends at most one round: the worker dedupes on the key.
- The spool is bounded (`KAIZEN_SPOOL_MAX_BYTES`, default 512 MiB): a hook that
  finds it full drops its event and writes a warning line instead.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib

from workers.durable import atomic_write, fsync_dir
from workers.hooks import fastjson

TYPE_CHECKING = False  # typing costs ~3 ms to import; the hook path avoids it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

MAGIC = b"KS"
_HEAD = struct.Struct(">2sII")
HEAD_SIZE = _HEAD.size
MAX_FRAME = 64 << 20
DEFAULT_MAX_BYTES = 512 << 20
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def default_spool_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "kaizen-stream", "spool")


def spool_dir() -> str:
    return os.environ.get("KAIZEN_SPOOL_DIR") or default_spool_dir()


def max_bytes() -> int:
    raw = os.environ.get("KAIZEN_SPOOL_MAX_BYTES")
    try:
        return int(raw) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def encode_frame(body: bytes) -> bytes:
    return _HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body


def seq_file_name(session_id: str) -> str:
    """A file name for the session's counter: the id itself when safe, else a checksum.

    Two sessions sharing a counter file (checksum collision) only get gaps in
    their seqs, never a repeated seq.
    """
    if 0 < len(session_id) <= 80 and _SAFE.issuperset(session_id) and session_id[0] != ".":
        return session_id
    raw = session_id.encode("utf-8", "surrogatepass")
    return f"x{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}{len(raw):x}"


def _seg_name(n: int) -> str:
    return f"{n:020d}.seg"


class Spool:
    """One spool directory; cheap to construct (no I/O until used)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or spool_dir()
        self.seg_dir = os.path.join(self.path, "seg")
        self.seq_dir = os.path.join(self.path, "seq")
        self.lock_path = os.path.join(self.path, "lock")
        self.commit_path = os.path.join(self.path, "commit")
        self.shipper_lock_path = os.path.join(self.path, "shipper.lock")
        self.warnings_path = os.path.join(self.path, "warnings.log")

    # -- layout -------------------------------------------------------------

    def ensure(self) -> None:
        os.makedirs(self.seg_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.seq_dir, mode=0o700, exist_ok=True)

    def segments(self) -> list[int]:
        try:
            names = os.listdir(self.seg_dir)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-4]) for n in names if n.endswith(".seg") and n[:-4].isdigit())

    def seg_path(self, n: int) -> str:
        return os.path.join(self.seg_dir, _seg_name(n))

    def size(self) -> int:
        total = 0
        for n in self.segments():
            try:  # noqa: SIM105 - no contextlib on the hook path
                total += os.stat(self.seg_path(n)).st_size
            except FileNotFoundError:
                pass
        return total

    def _lock(self) -> int:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def warn(self, message: str) -> None:
        """One line in warnings.log; past LOG_MAX bytes it moves to warnings.log.1."""
        rotate_log(self.warnings_path)
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n".encode()
        fd = os.open(self.warnings_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    # -- hook side ----------------------------------------------------------

    def append(
        self, fields: dict[str, Any], limit: int | None = None, seq: int | None = None
    ) -> int | None:
        """Assign the session's next seq, append the event durably; the seq, or None if full.

        A caller that derives the key from the content (live token capture,
        workers/hooks/usage.py) passes `seq`; the session's counter is then untouched.
        """
        try:
            lock = self._lock()
        except FileNotFoundError:
            self.ensure()
            lock = self._lock()
        try:
            segs = self.segments()
            if not segs:
                self.ensure()
            limit = max_bytes() if limit is None else limit
            used = 0
            for n in segs:
                try:  # noqa: SIM105 - no contextlib on the hook path
                    used += os.stat(self.seg_path(n)).st_size
                except FileNotFoundError:
                    pass
            if used >= limit:
                self.warn(
                    f"spool full ({used} bytes >= KAIZEN_SPOOL_MAX_BYTES={limit}); "
                    f"dropped an event of session {fields.get('session_id')!r}"
                )
                return None
            if seq is None:
                seq = self._next_seq(str(fields["session_id"]))
                fields["producer"] = self._producer()
            fields["seq"] = seq
            # a lone surrogate (JSON "\ud800") has no UTF-8: it becomes "?" rather than
            # failing the hook, so every frame body is valid UTF-8 and Avro can hold it
            body = fastjson.dumps(fields).encode("utf-8", "replace")
            seg = self.seg_path(segs[-1] if segs else 0)
            fd = os.open(seg, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, encode_frame(body))
                os.fsync(fd)
            finally:
                os.close(fd)
            return seq
        finally:
            os.close(lock)  # closing releases the flock

    def _producer(self) -> str:
        """This spool's producer id, made on first use (the caller holds `lock`)."""
        path = os.path.join(self.path, "producer")
        try:
            with open(path, "rb") as f:
                raw = f.read(64).strip()
            if len(raw) == 16:
                return raw.decode("ascii")
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        producer = os.urandom(8).hex()
        atomic_write(path, producer.encode() + b"\n", mode=0o600)
        return producer

    def _next_seq(self, session_id: str) -> int:
        path = os.path.join(self.seq_dir, seq_file_name(session_id))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            self.ensure()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            raw = os.pread(fd, 32, 0).strip()
            seq = int(raw) if raw.isdigit() else 0
            os.pwrite(fd, b"%020d\n" % (seq + 1), 0)
            os.fdatasync(fd)  # durable before the frame: a crash leaves a gap, not a reuse
            return seq
        finally:
            os.close(fd)

    def shipper_running(self) -> bool:
        """True when a shipper holds shipper.lock (a non-blocking probe, microseconds)."""
        try:
            fd = os.open(self.shipper_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True  # cannot tell: do not spawn
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- shipper side -------------------------------------------------------

    def seal(self) -> None:
        """Start a new segment if the newest one has data, so every frame so far is sealed."""
        self.ensure()
        lock = self._lock()
        try:
            segs = self.segments()
            if not segs:
                return
            last = segs[-1]
            if os.stat(self.seg_path(last)).st_size > 0:
                fd = os.open(self.seg_path(last + 1), os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
                fsync_dir(self.seg_dir)
        finally:
            os.close(lock)

    def read_commit(self) -> tuple[int, int]:
        try:
            with open(self.commit_path, "rb") as f:
                seg, off = f.read().split()
            return int(seg), int(off)
        except (FileNotFoundError, ValueError):
            return (-1, 0)

    def write_commit(self, seg: int, offset: int) -> None:
        atomic_write(self.commit_path, f"{seg} {offset}\n".encode(), mode=0o600)

    def sealed_frames(
        self, max_events: int = 10_000, max_bytes_: int = 16 << 20
    ) -> Iterator[Frame]:
        """Frames after the commit pointer in sealed segments, up to the given amounts."""
        segs = self.segments()
        if len(segs) < 2:
            return
        cseg, coff = self.read_commit()
        events = size = 0
        for n in segs[:-1]:
            if n < cseg:
                continue
            start = coff if n == cseg else 0
            with open(self.seg_path(n), "rb") as f:
                data = f.read()
            for frame in iter_frames(data, start, n, self.warn):
                yield frame
                events += 1
                size += len(frame.body)
                if events >= max_events or size >= max_bytes_:
                    return

    def drop_before(self, seg: int, offset: int) -> None:
        """Delete sealed segments wholly before the commit pointer."""
        segs = self.segments()
        for n in segs[:-1]:
            path = self.seg_path(n)
            if n < seg or (n == seg and offset >= os.stat(path).st_size):
                os.unlink(path)

    def pending(self) -> bool:
        """Whether any event is waiting: data in the newest segment or unacked sealed frames."""
        segs = self.segments()
        if not segs:
            return False
        if os.stat(self.seg_path(segs[-1])).st_size > 0:
            return True
        cseg, coff = self.read_commit()
        for n in segs[:-1]:
            size = os.stat(self.seg_path(n)).st_size
            if n > cseg or (n == cseg and coff < size):
                return True
        return False


class Frame:
    """One good frame: its segment, the offset just after it (the commit pointer once acked)."""

    __slots__ = ("body", "end", "segment")

    def __init__(self, segment: int, end: int, body: bytes) -> None:
        self.segment = segment
        self.end = end
        self.body = body

    def fields(self) -> dict[str, Any]:
        value: dict[str, Any] = fastjson.loads(self.body)
        return value


def iter_frames(data: bytes, start: int, segment: int, warn: Any = None) -> Iterator[Frame]:
    """Frames of a sealed segment from `start`; bad bytes are skipped to the next good frame."""
    pos = start
    size = len(data)
    while pos < size:
        ok = False
        if pos + HEAD_SIZE <= size:
            magic, length, crc = _HEAD.unpack_from(data, pos)
            end = pos + HEAD_SIZE + length
            if magic == MAGIC and length <= MAX_FRAME and end <= size:
                body = data[pos + HEAD_SIZE : end]
                if zlib.crc32(body) == crc:
                    ok = True
                    yield Frame(segment, end, body)
                    pos = end
        if not ok:
            nxt = data.find(MAGIC, pos + 1)
            skipped_to = size if nxt < 0 else nxt
            if warn is not None:
                warn(
                    f"segment {segment}: bad frame at offset {pos}, "
                    f"skipped {skipped_to - pos} bytes"
                )
            pos = skipped_to


LOG_MAX = 1 << 20


def rotate_log(path: str, limit: int = LOG_MAX) -> None:
    """Keep a log file bounded: past `limit` bytes it becomes `<path>.1` (the old .1 goes)."""
    try:
        if os.stat(path).st_size > limit:
            os.replace(path, path + ".1")
    except OSError:
        pass
