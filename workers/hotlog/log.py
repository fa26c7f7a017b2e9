"""PartitionLog: the segmented, group-committed, crash-recovering log of one topic-partition.

Directory ``<data>/hotlog/<topic>-<partition>/`` holds the segments, ``checkpoint`` and
``LOCK`` (an exclusive ``flock`` held while a log is open: one writer per directory).

Invariants:

* Kafka offsets never decrease along the log; a segment is named by the offset of its first
  frame and created lazily by the first append after a roll; base offsets strictly increase;
* one ``append_batch`` is one ``write()`` into one segment: a roll happens before a batch that
  would cross ``segment_bytes`` (a batch bigger than a segment gets a segment of its own);
* rolling fsyncs the old segment before the new one exists, so only the last segment can hold
  a torn tail, and recovery scans only the last segment, from the checkpoint when it is there;
* ``flush()`` returns once every frame appended before it was called is fsynced; its fsync
  runs outside the bookkeeping lock, so appends from another thread go on during it;
* ``pending`` counts frames appended but not yet known durable; the checkpoint only names a
  position covered by a completed fsync;
* reads (``read``, ``scan``) are safe from any thread while appends go on: they never look
  past the end of the last completed write;
* retention deletes whole segments, oldest first, never the last (active) one;
* a failed fsync poisons the log: every later append and flush raises :class:`LogFailed`,
  so nothing appended before the failure is ever reported durable; reopening recovers
  from what the disk really holds;
* recovery cuts the last segment at the first damage after the checkpoint (what follows a
  power-cut hole was never fsynced): the log stays contiguous, with offsets in order.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from workers.durable import fsync_dir
from workers.errors import HotLogError
from workers.hotlog import checkpoint, frame, segment
from workers.hotlog.checkpoint import Checkpoint
from workers.hotlog.frame import OVERHEAD, CorruptFrame
from workers.hotlog.policy import (
    BadRange,
    CommitPolicy,
    Entry,
    Location,
    RecoveryReport,
    RetentionPolicy,
    SegmentInfo,
)
from workers.hotlog.segment import HEADER_SIZE

log = logging.getLogger(__name__)

LOCK_NAME = "LOCK"
MAX_SEGMENT_BYTES = (1 << 32) - 1  # positions are u32 in a packed Location


class LogLocked(HotLogError, RuntimeError):
    """Another PartitionLog (in this or another process) has the directory open."""


class LogClosed(HotLogError, RuntimeError):
    """The log was closed."""


class LogFailed(HotLogError, RuntimeError):
    """An fsync (or the checkpoint write after it) failed: reopen the log to go on.

    After a failed fsync Linux may have dropped the dirty pages and marked them clean, so
    a second fsync would "succeed" without the data on disk ("fsyncgate"). Nothing
    appended since the last good fsync can ever be called durable by this instance.
    """


DEFAULT_COMMIT = CommitPolicy()
DEFAULT_RETENTION = RetentionPolicy()


class PartitionLog:
    """The hot log of one topic-partition.  Create with :meth:`open`."""

    recovery: RecoveryReport

    def __init__(
        self,
        directory: Path,
        *,
        topic: str,
        partition: int,
        segment_bytes: int,
        commit: CommitPolicy,
        retention: RetentionPolicy,
        checkpoint_bytes: int,
        lock_fd: int,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.segment_bytes = segment_bytes
        self.commit = commit
        self.retention = retention
        self.checkpoint_bytes = checkpoint_bytes
        self._lock_fd = lock_fd
        self._lock = threading.Lock()  # bookkeeping and writes
        self._flush_lock = threading.Lock()  # one flush (and checkpoint write) at a time
        self._read_lock = threading.Lock()  # the cache of read fds
        self._read_fds: dict[int, int] = {}
        self._bases: list[int] = []
        self._fd: int | None = None  # write fd of the active segment; None until next append
        self._active: int | None = None  # base of the segment appends go to
        self._end = 0  # end of the last completed write in the active segment
        self._active_frames = 0
        self._last_offset: int | None = None
        self._appended = 0  # frames appended since open
        self._durable = 0  # of which known durable
        self._appended_bytes = 0
        self._durable_bytes = 0
        self._pending_since: float | None = None  # monotonic time of the oldest pending frame
        self._durable_loc: tuple[int, int] | None = None
        self._durable_last_offset: int | None = None
        self._ckpt_loc: tuple[int, int] | None = None
        self._since_ckpt = 0
        self._closed = False
        self._failed: BaseException | None = None
        self.bad_ranges_seen = 0  # counter: bad ranges met by recovery and scans
        self.recovery = RecoveryReport()

    # ------------------------------------------------------------------ opening, recovery

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        topic: str,
        partition: int,
        segment_bytes: int = 64 << 20,
        commit: CommitPolicy = DEFAULT_COMMIT,
        retention: RetentionPolicy = DEFAULT_RETENTION,
        checkpoint_bytes: int = 16 << 20,
    ) -> PartitionLog:
        """Open (creating if missing) and recover the log in ``directory``."""
        if not HEADER_SIZE < segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in ({HEADER_SIZE}, {MAX_SEGMENT_BYTES}]")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise LogLocked(f"{directory} is open in another PartitionLog") from None
        self = cls(
            directory,
            topic=topic,
            partition=partition,
            segment_bytes=segment_bytes,
            commit=commit,
            retention=retention,
            checkpoint_bytes=checkpoint_bytes,
            lock_fd=lock_fd,
        )
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        return self

    def _bad(self, rng: BadRange) -> None:
        self.bad_ranges_seen += 1
        log.warning(
            "hotlog %s: bad range in segment %d bytes [%d, %d): %s",
            self.directory.name,
            rng.segment,
            rng.start,
            rng.end,
            rng.reason,
        )

    def _recover(self) -> None:
        report = self.recovery
        bases = segment.list_bases(self.directory)
        ckpt = checkpoint.load(self.directory)
        while bases:
            base = bases[-1]
            path = self.directory / segment.name(base)
            with segment.Mapped(path) as m:
                header = m.header()
                size = m.size
            if header is None and size <= HEADER_SIZE:
                # torn at birth: the header never became durable, so no frame did either
                report.removed_segments.append(base)
                report.truncated_bytes += size
                path.unlink()
                fsync_dir(self.directory)
                bases.pop()
                continue
            if header is not None and (header.topic, header.partition) != (
                self.topic,
                self.partition,
            ):
                raise ValueError(
                    f"{path} belongs to {header.topic}-{header.partition}, "
                    f"not {self.topic}-{self.partition}"
                )
            use_ckpt = (
                ckpt is not None and ckpt.segment == base and HEADER_SIZE <= ckpt.position <= size
            )
            start = ckpt.position if use_ckpt and ckpt is not None else HEADER_SIZE
            if header is None:
                rng = BadRange(base, 0, HEADER_SIZE, "bad segment header (rewritten)")
                report.bad_ranges.append(rng)
                self._bad(rng)
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.pwrite(fd, segment.encode_header(self.topic, self.partition, base), 0)
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            scan = segment.scan_tail(path, base, start)
            report.scanned_from = Location(base, start, 0)
            report.scanned_bytes = scan.size - start
            report.frames_scanned = scan.frames
            if scan.bad:
                # Damage after the checkpoint, where durability is unknown: a power cut writes
                # pages back out of order, so a hole here may be followed by frames of a later
                # write that was never fsynced (never acked), while the hole's own messages are
                # gone. Stepping over it would put the watermark past them. Cut the log at the
                # hole; whatever followed is re-fetched from the source topic (the index owner
                # rebuilds when its pointers no longer read back, lowering the watermark).
                lo = scan.bad[0][0]
                rng = BadRange(base, lo, scan.size, "damage after the checkpoint: log cut here")
                report.bad_ranges.append(rng)
                self._bad(rng)
                report.truncated_bytes += scan.size - lo
                segment.truncate(path, lo)
                scan = segment.scan_tail(path, base, start)
            if scan.tail is not None:
                lo, hi = scan.tail
                report.truncated_bytes += hi - lo
                log.warning(
                    "hotlog %s: truncating torn tail of segment %d: bytes [%d, %d)",
                    self.directory.name,
                    base,
                    lo,
                    hi,
                )
                segment.truncate(path, lo)
            had_frames = scan.frames > 0 or scan.bad or start > HEADER_SIZE
            if not had_frames:
                # a segment with a header and no frame: drop it, the next append names anew
                report.removed_segments.append(base)
                path.unlink()
                fsync_dir(self.directory)
                bases.pop()
                continue
            last = scan.last_offset
            if last is None and use_ckpt and ckpt is not None:
                last = ckpt.last_offset
            if last is None:  # only damaged frames after the checkpoint: rescan whole
                last = segment.scan_tail(path, base, HEADER_SIZE).last_offset
            fd = os.open(path, os.O_WRONLY)
            os.lseek(fd, scan.end, os.SEEK_SET)
            os.fdatasync(fd)  # what survived the crash in the page cache is now durable
            self._fd = fd
            self._active = base
            self._end = scan.end
            self._active_frames = 1
            self._last_offset = last if last is not None else base
            self._durable_loc = (base, scan.end)
            self._durable_last_offset = self._last_offset
            break
        # a dropped empty segment makes the one before it the last: the loop recovered that
        # one as the active segment, so either there is an active segment or no segment
        self._bases = bases
        if self._durable_loc is not None:
            self._write_checkpoint(self._durable_loc, self._durable_last_offset)

    # ------------------------------------------------------------------ appending

    def append(self, payload: bytes, offset: int) -> Location:
        """Append one frame; durable after the next :meth:`flush`."""
        return self.append_batch((payload,), offset)[0]

    def append_batch(self, payloads: Sequence[bytes], offset: int) -> list[Location]:
        """Append the frames of one Kafka message in one write, never split across segments."""
        if not payloads:
            return []
        data, lens = frame.encode_batch(payloads, offset)
        size = len(data)
        with self._lock:
            if self._closed:
                raise LogClosed("log is closed")
            self._check_failed()
            if self._last_offset is not None and offset < self._last_offset:
                raise ValueError(f"offset {offset} < last offset {self._last_offset}")
            if self._fd is None:
                self._start_segment(offset)
            elif (
                self._end + size > self.segment_bytes
                and self._active_frames
                and self._active is not None
                and offset > self._active
            ):
                self._roll(offset)
            fd = self._fd
            start = self._end
            assert fd is not None
            try:
                segment.write_all(fd, data)
            except BaseException:
                # keep the file a sequence of whole frames: cut a partial write off
                os.ftruncate(fd, start)
                os.lseek(fd, start, os.SEEK_SET)
                raise
            self._end = start + size
            self._active_frames += len(payloads)
            self._last_offset = offset
            if self._appended == self._durable:
                self._pending_since = time.monotonic()
            self._appended += len(payloads)
            self._appended_bytes += size
            base = self._active
        assert base is not None
        return frame.locations(base, start, lens)

    def _start_segment(self, base: int) -> None:
        self._fd = segment.create(self.directory, self.topic, self.partition, base)
        self._active = base
        self._end = HEADER_SIZE
        self._active_frames = 0
        self._bases.append(base)

    def _roll(self, base: int) -> None:
        """Seal the active segment (fsync it whole) and start segment ``base``; lock held."""
        assert self._fd is not None and self._active is not None
        self._sync(self._fd)
        os.close(self._fd)
        self._fd = None
        self._durable = self._appended
        self._durable_bytes = self._appended_bytes
        self._pending_since = None
        self._durable_loc = (self._active, self._end)
        self._durable_last_offset = self._last_offset
        self._start_segment(base)
        # the new header is durable: let the next flush move the checkpoint into it
        self._durable_loc = (base, HEADER_SIZE)
        self._since_ckpt = self.checkpoint_bytes

    def should_flush(self) -> bool:
        """True when the commit policy says the pending frames should be made durable now."""
        pending = self._appended - self._durable
        if not pending:
            return False
        since = self._pending_since
        age_ms = None if since is None else (time.monotonic() - since) * 1000.0
        return self.commit.due(pending, self._appended_bytes - self._durable_bytes, age_ms)

    @property
    def pending(self) -> int:
        """Frames appended but not yet known durable."""
        return self._appended - self._durable

    @property
    def durable_frames(self) -> int:
        """Frames appended since open that are known durable (fsynced)."""
        return self._durable

    def flush(self) -> None:
        """fsync everything appended so far; a no-op when nothing is pending.

        Safe to call from another thread than the appender; appends go on during the fsync.
        """
        with self._flush_lock:
            with self._lock:
                self._check_failed()
                if self._appended == self._durable or self._fd is None:
                    return
                fd = os.dup(self._fd)
                target = self._appended
                target_bytes = self._appended_bytes
                assert self._active is not None
                loc = (self._active, self._end)
                last = self._last_offset
                snapshot_at = time.monotonic()
            try:
                self._sync(fd)
            finally:
                os.close(fd)
            write_ckpt = False
            with self._lock:
                if target > self._durable:
                    self._since_ckpt += target_bytes - self._durable_bytes
                    self._durable = target
                    self._durable_bytes = target_bytes
                    # frames appended since the snapshot are younger than it
                    self._pending_since = None if target == self._appended else snapshot_at
                if self._durable_loc is None or loc > self._durable_loc:
                    self._durable_loc = loc
                    self._durable_last_offset = last
                if self._since_ckpt >= self.checkpoint_bytes:
                    write_ckpt = True
                    self._since_ckpt = 0
                ckpt_loc, ckpt_last = self._durable_loc, self._durable_last_offset
            if write_ckpt:
                try:
                    self._write_checkpoint(ckpt_loc, ckpt_last)
                except OSError as exc:
                    self._failed = exc
                    raise LogFailed(f"{self.directory}: checkpoint write failed: {exc}") from exc

    def _check_failed(self) -> None:
        if self._failed is not None:
            raise LogFailed(
                f"{self.directory}: an fsync failed earlier ({self._failed}); reopen the log"
            ) from self._failed

    def _sync(self, fd: int) -> None:
        """fdatasync ``fd``; on failure poison the log (see :class:`LogFailed`)."""
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._failed = exc
            raise LogFailed(f"{self.directory}: fsync failed: {exc}") from exc

    def _write_checkpoint(self, loc: tuple[int, int], last: int | None) -> None:
        if loc == self._ckpt_loc:
            return
        checkpoint.store(self.directory, Checkpoint(loc[0], loc[1], last))
        self._ckpt_loc = loc

    # ------------------------------------------------------------------ reading

    @property
    def last_segment_base(self) -> int | None:
        bases = self._bases
        return bases[-1] if bases else None

    @property
    def last_offset(self) -> int | None:
        """Greatest Kafka offset appended (None for an empty log)."""
        return self._last_offset

    @property
    def end(self) -> Location | None:
        """Where the next frame of the active segment would go (length 0)."""
        with self._lock:
            if self._active is None:
                return None
            return Location(self._active, self._end, 0)

    def _read_fd(self, base: int) -> int:
        fd = self._read_fds.get(base)
        if fd is None:
            fd = os.open(self.directory / segment.name(base), os.O_RDONLY)
            self._read_fds[base] = fd
        return fd

    def read(self, loc: Location) -> bytes:
        """The payload at ``loc``, CRC-checked; raises CorruptFrame."""
        with self._read_lock:
            try:
                fd = self._read_fd(loc.segment)
            except FileNotFoundError:
                raise CorruptFrame(f"no segment {loc.segment}") from None
            data = os.pread(fd, loc.length + OVERHEAD, loc.position)
        got = frame.check(data, 0, len(data), loc.segment)
        if got is None or got[0] != loc.length:
            raise CorruptFrame(f"bad frame at {loc}")
        return data[frame.HEAD_SIZE : frame.HEAD_SIZE + loc.length]

    def scan(self, start: Location | None = None) -> Iterator[tuple[Location, bytes]]:
        """Every good frame from ``start`` (default: the beginning) in log order.

        Bad ranges are skipped by resync and reported (log line, ``bad_ranges_seen``,
        ``on_bad`` of :meth:`entries`).
        """
        for e in self.entries(start):
            yield e.location, e.payload

    def entries(
        self,
        start: Location | None = None,
        on_bad: Callable[[BadRange], None] | None = None,
    ) -> Iterator[Entry]:
        """Like :meth:`scan`, also giving each frame's Kafka offset (for index rebuilds).

        ``on_bad``, when given, is called with each :class:`BadRange` met.
        """
        with self._lock:
            bases = list(self._bases)
            active, active_end = self._active, self._end
        for base in bases:
            if start is not None and base < start.segment:
                continue
            pos = start.position if start is not None and base == start.segment else HEADER_SIZE
            end = active_end if base == active else None
            try:
                m = segment.Mapped(self.directory / segment.name(base), end)
            except FileNotFoundError:  # removed by retention meanwhile
                continue
            with m:
                for item in m.frames(base, pos):
                    if isinstance(item, frame.Good):
                        yield Entry(
                            Location(base, item.position, item.length),
                            item.offset,
                            m.payload(item),
                        )
                    else:
                        reason = "torn tail" if item.at_end else "bad frame skipped by resync"
                        rng = BadRange(base, item.start, item.end, reason)
                        self._bad(rng)
                        if on_bad is not None:
                            on_bad(rng)

    def segments(self) -> list[SegmentInfo]:
        """The segments, oldest first."""
        out = []
        for base in list(self._bases):
            path = self.directory / segment.name(base)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append(SegmentInfo(base, path, st.st_size, st.st_mtime))
        return out

    # ------------------------------------------------------------------ retention, closing

    def expired_segments(self, now: float | None = None) -> list[int]:
        """Bases of the whole old segments the retention policy lets go, oldest first.

        The last (active) segment is never among them. Nothing is deleted: a caller with an
        index drops the index entries first, then calls `delete_segments`, so the index
        never points into a deleted segment.
        """
        policy = self.retention
        if policy.max_age_s is None and policy.max_bytes is None:
            return []
        now = time.time() if now is None else now
        infos = self.segments()
        total = sum(i.size for i in infos)
        expired: list[int] = []
        for info in infos[:-1]:
            too_old = policy.max_age_s is not None and now - info.mtime > policy.max_age_s
            too_big = policy.max_bytes is not None and total > policy.max_bytes
            if not (too_old or too_big):
                break  # oldest first: keep the log contiguous
            expired.append(info.base)
            total -= info.size
        return expired

    def delete_segments(self, bases: Sequence[int]) -> None:
        """Delete these whole segments; the active (last) segment is never deleted."""
        with self._lock:
            active = self._bases[-1] if self._bases else None
            doomed = {b for b in bases if b != active and b in self._bases}
            self._bases = [b for b in self._bases if b not in doomed]
        if not doomed:
            return
        with self._read_lock:
            for base in doomed:
                fd = self._read_fds.pop(base, None)
                if fd is not None:
                    os.close(fd)
        for base in sorted(doomed):
            (self.directory / segment.name(base)).unlink(missing_ok=True)
        fsync_dir(self.directory)

    def enforce_retention(self, now: float | None = None) -> list[int]:
        """Delete whole old segments by age and total size; return the removed bases.

        For a log without an index. With one, use `expired_segments`, drop the entries,
        then `delete_segments`.
        """
        expired = self.expired_segments(now)
        self.delete_segments(expired)
        return expired

    def close(self) -> None:
        """Flush, write the checkpoint, release the directory."""
        if self._closed:
            return
        if self._failed is None:
            self.flush()
        with self._flush_lock, self._lock:
            self._closed = True
            if self._durable_loc is not None and self._failed is None:
                self._write_checkpoint(self._durable_loc, self._durable_last_offset)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self._release()

    def _release(self) -> None:
        with self._read_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
