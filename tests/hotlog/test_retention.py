from __future__ import annotations

import os
from pathlib import Path

from workers.hotlog import RetentionPolicy

from .helpers import open_log


def _fill(log, n: int = 60) -> None:  # type: ignore[no-untyped-def]
    for off in range(n):
        log.append_batch([b"r" * 200] * 4, off * 10)
    log.flush()


def test_retention_by_size_deletes_whole_old_segments(tmp_path: Path) -> None:
    with open_log(
        tmp_path / "t-0", segment_bytes=4096, retention=RetentionPolicy(max_bytes=10_000)
    ) as log:
        _fill(log)
        before = log.segments()
        assert len(before) > 4
        removed = log.enforce_retention()
        after = log.segments()
        assert removed == [s.base for s in before[: len(removed)]]  # oldest first
        assert [s.base for s in after] == [s.base for s in before[len(removed) :]]
        assert sum(s.size for s in after) <= 10_000
        assert (
            sum(s.size for s in after) + before[len(removed) - 1].size > 10_000
        )  # no more than needed
        for base in removed:
            assert not (tmp_path / "t-0" / f"{base:020d}.seg").exists()
        # reads and scans only see the kept segments
        assert {loc.segment for loc, _ in log.scan()} == {s.base for s in after}
        assert log.enforce_retention() == []


def test_retention_never_deletes_the_active_segment(tmp_path: Path) -> None:
    policy = RetentionPolicy(max_bytes=1, max_age_s=0.0)
    with open_log(tmp_path / "t-0", segment_bytes=4096, retention=policy) as log:
        _fill(log)
        last = log.last_segment_base
        before = [s.base for s in log.segments()]
        removed = log.enforce_retention(now=1e12)
        assert last not in removed and removed == before[:-1]
        assert [s.base for s in log.segments()] == [last]
        loc = log.append(b"still here", 10_000)
        assert log.read(loc) == b"still here"


def test_retention_by_age(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    with open_log(d, segment_bytes=4096, retention=RetentionPolicy(max_age_s=3600)) as log:
        _fill(log)
        segs = log.segments()
        now = 1_000_000_000.0
        # the three oldest are two hours old, the rest fresh
        for i, s in enumerate(segs):
            t = now - 7200 if i < 3 else now - 10
            os.utime(s.path, (t, t))
        assert log.enforce_retention(now=now) == [s.base for s in segs[:3]]
        assert log.enforce_retention(now=now) == []
        # everything is old: all but the active one go
        removed = log.enforce_retention(now=now + 10**6)
        assert removed == [s.base for s in segs[3:-1]]
    with open_log(d) as log:
        assert [s.base for s in log.segments()] == [segs[-1].base]
        assert log.recovery.bad_ranges == []


def test_no_retention_policy_keeps_everything(tmp_path: Path) -> None:
    with open_log(tmp_path / "t-0", segment_bytes=4096) as log:
        _fill(log)
        n = len(log.segments())
        assert log.enforce_retention(now=1e12) == []
        assert len(log.segments()) == n
