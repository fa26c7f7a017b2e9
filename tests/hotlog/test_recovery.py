"""Torn tails and bit rot: opening never crashes, never returns a bad frame, reports exactly
the damaged range, and appends go on after recovery."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.hotlog import BadRange, Location
from workers.hotlog import checkpoint as ckpt_mod
from workers.hotlog.checkpoint import Checkpoint
from workers.hotlog.segment import HEADER_SIZE

from .helpers import build, frame_end, open_log

SEG = "00000000000000000100.seg"


def _payloads(n: int) -> list[bytes]:
    return [bytes([i % 251]) * (5 + i % 13) + os.urandom(4) for i in range(n)]


def test_cut_at_every_byte_of_the_last_frames(tmp_path: Path) -> None:
    payloads = _payloads(12)
    src = tmp_path / "src"
    locs = build(src, payloads, batch=3)
    data = (src / SEG).read_bytes()
    boundaries = [loc.position for loc in locs] + [len(data)]
    first_cut = locs[-4].position
    for with_checkpoint in (False, True):
        for cut in range(first_cut, len(data) + 1):
            d = tmp_path / f"cut-{int(with_checkpoint)}-{cut}"
            d.mkdir()
            (d / SEG).write_bytes(data[:cut])
            if with_checkpoint:  # a checkpoint before the damage
                ckpt_mod.store(d, Checkpoint(100, locs[2].position, 100))
            whole = [i for i, loc in enumerate(locs) if frame_end(loc) <= cut]
            good_end = max([b for b in boundaries if b <= cut])
            with open_log(d) as log:
                assert log.recovery.bad_ranges == []
                assert log.recovery.truncated_bytes == cut - good_end
                assert (d / SEG).stat().st_size == good_end
                assert [p for _, p in log.scan()] == [payloads[i] for i in whole]
                new = log.append(b"next", 200)
                assert new.position == good_end
            with open_log(d) as log:
                assert log.recovery.truncated_bytes == 0
                assert log.read(new) == b"next"
                assert [p for _, p in log.scan()][-1] == b"next"
            shutil.rmtree(d)


def _expected(
    locs: list[Location], size: int, flips: set[int]
) -> tuple[list[int], list[tuple[int, int]], int, bool]:
    """(surviving frame indexes, mid-file bad ranges, truncated bytes, header damaged)."""
    damaged = {
        i for i, loc in enumerate(locs) if any(loc.position <= f < frame_end(loc) for f in flips)
    }
    ranges: list[tuple[int, int]] = []
    truncated = 0
    i = 0
    while i < len(locs):
        if i not in damaged:
            i += 1
            continue
        j = i
        while j + 1 < len(locs) and j + 1 in damaged:
            j += 1
        if j == len(locs) - 1:
            truncated = size - locs[i].position
        else:
            ranges.append((locs[i].position, locs[j + 1].position))
        i = j + 1
    survivors = [i for i in range(len(locs)) if i not in damaged]
    return survivors, ranges, truncated, any(f < HEADER_SIZE for f in flips)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=25),
    flip_at=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=3
    ),
    data=st.data(),
)
def test_bit_flips_anywhere(
    tmp_path_factory, sizes: list[int], flip_at: list[tuple[float, int]], data: st.DataObject
) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("flip")
    payloads = [data.draw(st.binary(min_size=n, max_size=n)) for n in sizes]
    locs = build(root / "t-0", payloads)
    seg = root / "t-0" / SEG
    raw = bytearray(seg.read_bytes())
    size = len(raw)
    orig = bytes(raw)
    for frac, bit in flip_at:
        raw[int(frac * size)] ^= 1 << bit
    flips = {i for i in range(size) if raw[i] != orig[i]}
    seg.write_bytes(bytes(raw))
    survivors, ranges, truncated, header = _expected(locs, size, flips)
    damaged = sorted(set(range(len(locs))) - set(survivors))
    # 1. the damage lies before the checkpoint (written at close, naming the end): the frames
    # there were fsynced, so it is bit rot; recovery scans nothing, reads resync past it.
    cut = root / "cut"
    shutil.copytree(root / "t-0", cut)
    seen: list[BadRange] = []
    with open_log(root / "t-0") as log:
        rep = log.recovery
        assert [(r.start, r.end) for r in rep.bad_ranges] == ([(0, HEADER_SIZE)] if header else [])
        assert rep.truncated_bytes == 0
        out = list(log.entries(on_bad=seen.append))
        assert [e.payload for e in out] == [payloads[i] for i in survivors]
        for e in out:
            assert log.read(e.location) == e.payload
        # the scan reports every damaged range (the header was rewritten)
        tail = [(size - truncated, size)] if truncated else []
        assert [(r.start, r.end) for r in seen] == ranges + tail
        if survivors:
            loc = log.append(b"after", 1000)
            assert log.read(loc) == b"after"
    # 2. no checkpoint: durability after the segment's header is unknown, and a power cut
    # can leave a hole followed by frames never fsynced: the log is cut at the first damage.
    (cut / "checkpoint").unlink()
    with open_log(cut) as log:
        rep = log.recovery
        got = [(r.start, r.end) for r in rep.bad_ranges]
        first = locs[damaged[0]].position if damaged else size
        kept = [i for i in range(len(locs)) if not damaged or i < damaged[0]]
        mid = [(first, size)] if damaged and damaged != list(range(damaged[0], len(locs))) else []
        assert got == ([(0, HEADER_SIZE)] if header else []) + mid
        assert rep.truncated_bytes == size - first
        assert [e.payload for e in log.entries()] == [payloads[i] for i in kept]
        loc = log.append(b"after", 1000)
        assert log.read(loc) == b"after"
    shutil.rmtree(root)


def test_segment_torn_at_birth_is_removed(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    with open_log(d, segment_bytes=2048) as log:
        for off in range(20):
            log.append_batch([b"b" * 100] * 3, off)
        bases = [s.base for s in log.segments()]
    # a crash while creating the next segment left a partial header
    (d / "00000000000000000999.seg").write_bytes(b"KZHOTLOG\x00\x01")
    with open_log(d) as log:
        assert log.recovery.removed_segments == [999]
        assert [s.base for s in log.segments()] == bases
        assert log.last_offset == 19
        # appends go on in what is now the last segment (it has room)
        assert log.append(b"next", 20).segment == bases[-1]
    with open_log(d) as log:
        assert [p for _, p in log.scan()][-1] == b"next"


def test_empty_active_segment_is_dropped_and_last_offset_kept(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    with open_log(d, segment_bytes=2048) as log:
        for off in range(20):
            log.append_batch([b"b" * 100] * 3, off)
        last = log.last_segment_base
        assert last is not None
    path = d / f"{last:020d}.seg"
    with path.open("r+b") as f:  # nothing of the last segment's frames survived
        f.truncate(HEADER_SIZE + 5)
    (d / "checkpoint").unlink()
    with open_log(d) as log:
        assert log.recovery.removed_segments == [last]
        assert log.recovery.truncated_bytes == 5
        assert log.last_offset is not None and log.last_offset < last
        prev = log.last_segment_base
        assert prev is not None and prev < last
        assert log.append(b"again", last).segment == prev


def test_checkpoint_in_a_segment_removed_by_retention(tmp_path: Path) -> None:
    from workers.hotlog import RetentionPolicy

    d = tmp_path / "t-0"
    with open_log(d, segment_bytes=2048, retention=RetentionPolicy(max_bytes=1)) as log:
        for off in range(10):
            log.append_batch([b"c" * 100] * 3, off)
    ckpt_mod.store(d, Checkpoint(0, HEADER_SIZE + 116, 0))  # points into the oldest segment
    with open_log(d, segment_bytes=2048, retention=RetentionPolicy(max_bytes=1)) as log:
        removed = log.enforce_retention()
        assert 0 in removed
    with open_log(d) as log:
        assert log.recovery.bad_ranges == [] and log.recovery.truncated_bytes == 0
        assert log.last_offset == 9
