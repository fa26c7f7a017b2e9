"""Offline check (and repair) of every frame of every segment of the hot log.

``verify_partition`` reads a partition directory without a PartitionLog (opening one would
recover, i.e. change the files); with ``repair=True`` it takes the directory's lock and
truncates torn tails (a bad region that runs to the end of a segment) and rewrites damaged
segment headers. Without ``repair`` it takes no lock and creates no file (see
:mod:`workers.hotlog.owner`: a lock taken by a reader makes a worker's open fail), reads
segments into memory rather than mapping them (a worker may truncate them meanwhile) and
skips segments that retention removes under it. Bad ranges in the middle of a segment are
reported, never "repaired": the frames after them stay readable through resync.

The hook point for the index owner is :func:`repair`: it returns the partition directories it
changed, whose index must be rebuilt from ``PartitionLog.scan()`` / ``entries()``.

A bad range in the middle whose events were re-read from the source topic and appended again
(``verify --repair``, :mod:`workers.ingest.heal`) is recorded in the directory's ``healed``
file (:func:`mark_healed`); it is then reported as healed, not as damage that remains.

Invariants: without ``repair`` nothing is written and no lock is taken; a directory that a
running writer holds (its ``LOCK`` is taken) is never repaired, and its active segment's
tail is not called corrupt (a write may be in flight). The CLI repairs only under the
exclusive worker lock (:func:`workers.hotlog.owner.lock_for_repair`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from workers.durable import atomic_write, fsync_dir
from workers.hotlog import frame, segment
from workers.hotlog.layout import parse_dir_name, partition_dirs
from workers.hotlog.log import LOCK_NAME
from workers.hotlog.owner import flock_held, try_exclusive
from workers.hotlog.policy import BadRange
from workers.hotlog.segment import HEADER_SIZE

HEALED_NAME = "healed"  # JSON list of [segment, start, end]: bad ranges healed from the source


@dataclass
class PartitionVerdict:
    directory: Path
    segments: int = 0
    frames: int = 0
    bytes: int = 0
    bad_ranges: list[BadRange] = field(default_factory=list)  # damage found
    repaired: list[BadRange] = field(default_factory=list)  # of which repaired
    healed: list[BadRange] = field(default_factory=list)  # of which healed from the source
    problems: list[str] = field(default_factory=list)
    live: bool = False  # a running writer holds the directory

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def corrupt(self) -> bool:
        """Damage remains (after repair, if one was asked for)."""
        return bool(self.problems) or len(self.repaired) + len(self.healed) < len(self.bad_ranges)

    @property
    def unhealed(self) -> list[BadRange]:
        """Bad ranges in the middle of a segment neither repaired nor healed."""
        done = self.repaired + self.healed
        return [r for r in self.bad_ranges if r not in done and r.start > 0]


def _lock(directory: Path) -> int | None:
    """The directory's lock fd (exclusive), or None when a running writer holds it."""
    return try_exclusive(directory / LOCK_NAME)


def verify_partition(directory: Path, *, repair: bool = False) -> PartitionVerdict:
    """Check every frame of every segment in ``directory``; optionally repair torn tails."""
    verdict = PartitionVerdict(directory)
    if not repair:
        # read only: look at the lock, never take it (unknown counts as live)
        verdict.live = flock_held(directory / LOCK_NAME) is not False
        _check(verdict, repair=False)
        return verdict
    lock_fd = _lock(directory)
    verdict.live = lock_fd is None
    if verdict.live:
        verdict.problems.append("in use by a running writer: not repaired")
    try:
        _check(verdict, repair=repair and not verdict.live)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    return verdict


def _check(verdict: PartitionVerdict, *, repair: bool) -> None:
    directory = verdict.directory
    owner = parse_dir_name(directory.name)
    healed = load_healed(directory)
    bases = segment.list_bases(directory)
    verdict.segments = len(bases)
    for i, base in enumerate(bases):
        path = directory / segment.name(base)
        is_last = i == len(bases) - 1
        cut: int | None = None
        fix_header = False
        try:
            m = segment.Mapped(path, copy=not repair)
        except FileNotFoundError:  # removed by a running worker's retention meanwhile
            verdict.segments -= 1
            continue
        with m:
            verdict.bytes += m.size
            header = m.header()
            if header is None:
                if is_last and m.size <= HEADER_SIZE:
                    rng = BadRange(base, 0, m.size, "torn segment creation")
                    cut = 0
                else:
                    rng = BadRange(base, 0, min(HEADER_SIZE, m.size), "bad segment header")
                    fix_header = owner is not None
                verdict.bad_ranges.append(rng)
            elif header.base != base or (owner and (header.topic, header.partition) != owner):
                verdict.problems.append(
                    f"segment {base}: header says {header.topic}-{header.partition} "
                    f"base {header.base}"
                )
            if cut is None:
                for item in m.frames(base):
                    if isinstance(item, frame.Good):
                        verdict.frames += 1
                        continue
                    if item.at_end:
                        if is_last and verdict.live:
                            continue  # a write may be in flight
                        reason = "torn tail" if is_last else "bad tail of a sealed segment"
                        cut = item.start
                    else:
                        reason = "bad frame skipped by resync"
                    rng = BadRange(base, item.start, item.end, reason)
                    verdict.bad_ranges.append(rng)
                    if cut is None and (base, item.start, item.end) in healed:
                        verdict.healed.append(rng)
        if not repair:
            continue
        if fix_header and owner is not None:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, segment.encode_header(owner[0], owner[1], base), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            verdict.repaired.append(
                next(r for r in verdict.bad_ranges if r.segment == base and r.start == 0)
            )
        if cut is not None:
            rng = next(r for r in reversed(verdict.bad_ranges) if r.segment == base)
            if cut == 0:
                path.unlink()
                fsync_dir(directory)
            else:
                segment.truncate(path, cut)
            verdict.repaired.append(rng)


def load_healed(directory: Path) -> set[tuple[int, int, int]]:
    try:
        raw = json.loads((directory / HEALED_NAME).read_bytes())
    except (FileNotFoundError, ValueError):
        return set()
    return {(int(a), int(b), int(c)) for a, b, c in raw}


def mark_healed(directory: Path, ranges: list[BadRange]) -> None:
    """Record that the events of these bad ranges were appended again (durably, atomically)."""
    known = load_healed(directory) | {(r.segment, r.start, r.end) for r in ranges}
    atomic_write(directory / HEALED_NAME, json.dumps(sorted(known)).encode())


def verify_all(hotlog_dir: Path, *, repair: bool = False) -> list[PartitionVerdict]:
    """:func:`verify_partition` for every partition directory under ``hotlog_dir``."""
    return [verify_partition(d.path, repair=repair) for d in partition_dirs(hotlog_dir)]


def repaired_partitions(verdicts: list[PartitionVerdict]) -> list[Path]:
    return [v.directory for v in verdicts if v.repaired]


def repair(hotlog_dir: Path) -> list[Path]:
    """Repair every partition under ``hotlog_dir``; return the directories that changed.

    The hook for the index owner: rebuild the index of each returned directory.
    """
    return repaired_partitions(verify_all(hotlog_dir, repair=True))
