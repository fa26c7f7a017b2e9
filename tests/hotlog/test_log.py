from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from workers.hotlog import CommitPolicy, CorruptFrame, Location, LogLocked, PartitionLog
from workers.hotlog.segment import HEADER_SIZE

from .helpers import PARTITION, TOPIC, open_log


def test_append_read_scan_and_reopen(tmp_path: Path) -> None:
    d = tmp_path / f"{TOPIC}-{PARTITION}"
    with open_log(d) as log:
        assert log.last_segment_base is None and log.last_offset is None
        a = log.append(b"first", 7)
        b = log.append_batch([b"x" * 10, b"", b"y" * 3], 9)
        assert a == Location(7, HEADER_SIZE, 5)
        assert [loc.length for loc in b] == [10, 0, 3]
        assert log.pending == 4
        log.flush()
        assert log.pending == 0
        assert log.read(b[2]) == b"yyy"
        assert [p for _, p in log.scan()] == [b"first", b"x" * 10, b"", b"yyy"]
        assert [p for _, p in log.scan(b[1])] == [b"", b"yyy"]
        assert (d / "00000000000000000007.seg").exists()
    with open_log(d) as log:
        assert log.recovery.truncated_bytes == 0 and not log.recovery.bad_ranges
        assert log.last_offset == 9
        c = log.append(b"after", 10)
        assert c.position == b[2].position + 3 + 16
        assert [e.offset for e in log.entries()] == [7, 9, 9, 9, 10]
        with pytest.raises(ValueError):
            log.append(b"older", 9)


def test_read_rejects_a_wrong_location(tmp_path: Path) -> None:
    with open_log(tmp_path / "t-0") as log:
        loc = log.append(b"hello", 1)
        with pytest.raises(CorruptFrame):
            log.read(Location(loc.segment, loc.position + 1, 5))
        with pytest.raises(CorruptFrame):
            log.read(Location(99, HEADER_SIZE, 5))


def test_one_writer_per_directory(tmp_path: Path) -> None:
    with open_log(tmp_path / "t-0"), pytest.raises(LogLocked):
        open_log(tmp_path / "t-0")
    open_log(tmp_path / "t-0").close()  # released on close


def test_rolls_at_size_and_never_splits_a_batch(tmp_path: Path) -> None:
    with open_log(tmp_path / "t-0", segment_bytes=4096) as log:
        locs: list[Location] = []
        for off in range(0, 200):
            batch = log.append_batch([os.urandom(50 + off % 7) for _ in range(off % 5 + 1)], off)
            assert len({loc.segment for loc in batch}) == 1
            locs += batch
        segs = log.segments()
        assert len(segs) > 5
        for info in segs[:-1]:
            assert info.size <= 4096
            assert info.path.name == f"{info.base:020d}.seg"
        # each segment is named by the offset of its first frame
        firsts = {}
        for e in log.entries():
            firsts.setdefault(e.location.segment, e.offset)
        assert all(base == off for base, off in firsts.items())
        big = log.append_batch([b"z" * 3000, b"z" * 3000], 500)  # larger than a segment
        assert big[0].segment == 500 and big[0].position == HEADER_SIZE
        nxt = log.append(b"after", 501)
        assert nxt.segment == 501
        assert [p for _, p in log.scan()][-3:] == [b"z" * 3000, b"z" * 3000, b"after"]


def test_same_offset_cannot_start_a_segment_twice(tmp_path: Path) -> None:
    with open_log(tmp_path / "t-0", segment_bytes=1024) as log:
        locs = [log.append(b"q" * 100, 5) for _ in range(30)]
        assert {loc.segment for loc in locs} == {5}
        assert log.append(b"q", 6).segment == 6


def test_commit_policy(tmp_path: Path) -> None:
    policy = CommitPolicy(max_bytes=1 << 30, max_records=10, max_ms=1e9)
    with open_log(tmp_path / "t-0", commit=policy) as log:
        assert not log.should_flush()
        log.append_batch([b"a"] * 9, 1)
        assert not log.should_flush()
        log.append(b"a", 2)
        assert log.should_flush()
        log.flush()
        assert not log.should_flush() and log.pending == 0
        log.flush()  # no-op
    policy = CommitPolicy(max_bytes=100, max_records=10**9, max_ms=1e9)
    with open_log(tmp_path / "t-1", commit=policy) as log:
        log.append(b"a" * 90, 1)
        assert log.should_flush()
    policy = CommitPolicy(max_bytes=1 << 30, max_records=10**9, max_ms=0.0)
    with open_log(tmp_path / "t-2", commit=policy) as log:
        log.append(b"a", 1)
        assert log.should_flush()


def test_flush_from_another_thread_while_appending_and_reading(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=64 << 10, checkpoint_bytes=32 << 10)
    stop = threading.Event()
    errors: list[BaseException] = []
    written: list[tuple[Location, bytes]] = []

    def flusher() -> None:
        try:
            while not stop.is_set():
                seen = len(written)  # frames whose append_batch returned
                log.flush()
                # everything appended before the call is durable once it returns
                assert log.durable_frames >= seen
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                snapshot = list(written[-50:])
                for loc, payload in snapshot:
                    assert log.read(loc) == payload
                for _ in log.scan():
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flusher), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for off in range(3000):
        payloads = [os.urandom(20 + off % 100) for _ in range(off % 8 + 1)]
        written += zip(log.append_batch(payloads, off), payloads, strict=True)
    stop.set()
    for t in threads:
        t.join()
    log.close()
    assert not errors, errors
    reopened = open_log(tmp_path / "t-0")
    assert reopened.recovery.truncated_bytes == 0
    assert list(reopened.scan()) == written
    reopened.close()


def test_checkpoint_bounds_the_recovery_scan(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    with open_log(d, segment_bytes=1 << 30, checkpoint_bytes=1 << 16) as log:
        for off in range(2000):
            log.append_batch([b"p" * 200] * 4, off)
            if log.should_flush() or off % 100 == 0:
                log.flush()
    log = open_log(d)
    assert log.recovery.scanned_from is not None
    # close wrote a checkpoint at the very end: recovery scanned nothing
    assert log.recovery.scanned_bytes == 0
    log.close()
    assert isinstance(PartitionLog, type)
