"""kill -9 a process committing index batches; the watermark and the entries must agree.

Every entry of batch ``i`` is present iff the committed watermark is >= i: a batch and its
watermark are one WriteBatch, so a crash keeps both or neither.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.state.commit_loop import SESSIONS, N, batch_entries
from workers.state import PartitionStore

WRITER = Path(__file__).with_name("commit_loop.py")


def _run_and_kill(directory: Path, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _check(directory: Path) -> int:
    with PartitionStore.open(directory, 0) as store:
        wm = store.watermark
        assert wm >= 0
        # Every batch up to the watermark is fully there ...
        for i in range(wm + 1):
            for sid, seq, loc in batch_entries(i):
                assert store.seen(sid, seq)
                assert store.location(sid, seq) == loc
        # ... and nothing of a later batch.
        for i in range(wm + 1, wm + 3):
            for sid, seq, _ in batch_entries(i):
                assert store.location(sid, seq) is None
        assert store.stats()["entries"] == (wm + 1) * N
        assert store.stats()["sessions"] == SESSIONS
        total = sum(info.count for info in store.sessions())
        assert total == (wm + 1) * N
        for info in store.sessions():
            seqs = [q for q, _ in store.locations(info.session_id)]
            assert seqs == sorted(seqs) and seqs[-1] == info.last_seq
        return wm


@pytest.mark.slow
def test_kill_9_keeps_watermark_and_entries_together(tmp_path: Path) -> None:
    rnd = random.Random(11)
    last = -1
    for _ in range(4):
        _run_and_kill(tmp_path, rnd.uniform(0.0, 0.3))
        wm = _check(tmp_path)
        assert wm > last  # progress across restarts, never backwards
        last = wm
