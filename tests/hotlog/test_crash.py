"""kill -9 a writer at random moments: every frame it saw durable survives exactly once.

Recovery starts from the checkpoint the killed writer left when it names a position in the
last segment: only the frames after it are scanned, and the log is complete all the same.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.hotlog import Location, checkpoint, segment

from .helpers import open_log

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 30


def _run_and_kill(directory: Path, rnd: int, delay: float) -> tuple[bool, set[str]]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory), str(rnd)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # kill while it writes: the delay runs from its START line (opening and recovery take
    # a while on a loaded machine), not from the process start
    assert proc.stdout is not None
    first = proc.stdout.readline()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    durable: set[str] = set()
    started = False
    for line in (first + out).decode().split("\n")[:-1]:  # the last piece may be cut off
        if line.startswith("START"):
            started = True
        elif line.startswith("DURABLE "):
            durable.update(line[8:].split(","))
    return started, durable


@pytest.mark.slow
def test_kill_minus_nine_loses_nothing_durable(tmp_path: Path) -> None:
    d = tmp_path / "kaizen.events-0"
    rng = random.Random(int.from_bytes(os.urandom(4)))
    durable: set[str] = set()
    started_rounds = 0
    from_checkpoint = 0
    for rnd in range(ROUNDS):
        started, seen = _run_and_kill(d, rnd, rng.uniform(0.1, 0.6))
        started_rounds += started
        durable |= seen
        ckpt = checkpoint.load(d)
        bases = segment.list_bases(d) if d.exists() else []
        with open_log(d) as log:
            rep = log.recovery
            if ckpt is not None and bases and ckpt.segment == bases[-1]:
                # recovery from the checkpoint: it scanned exactly the frames after it
                from_checkpoint += 1
                assert rep.scanned_from == Location(ckpt.segment, ckpt.position, 0)
                after = [
                    e
                    for e in log.entries()
                    if e.location.segment == ckpt.segment and e.location.position >= ckpt.position
                ]
                assert rep.frames_scanned == len(after)
                if not after:
                    assert log.last_offset == ckpt.last_offset
            counts = collections.Counter()
            last = -1
            for e in log.entries():
                counts[e.payload.split(b"|", 1)[0].decode()] += 1
                assert e.offset >= last
                last = e.offset
                assert log.read(e.location) == e.payload
            assert not log.recovery.bad_ranges
        missing = durable - counts.keys()
        assert not missing, f"round {rnd}: lost durable frames {sorted(missing)[:5]}"
        dupes = [k for k, n in counts.items() if n > 1]
        assert not dupes, f"round {rnd}: duplicated frames {dupes[:5]}"
    assert started_rounds == ROUNDS and len(durable) > 1000
    # the checks above ran on each recovery from a checkpoint; a few of them prove the path
    # (how many rounds end in the checkpointed segment depends on where the kills land)
    assert from_checkpoint >= 3, f"recovered from a checkpoint {from_checkpoint} times"
    # appends continue after the last crash
    with open_log(d) as log:
        assert log.last_offset is not None
        loc = log.append(b"final|", log.last_offset + 1)
    with open_log(d) as log:
        assert log.read(loc) == b"final|"
        assert list(log.scan())[-1][1] == b"final|"
