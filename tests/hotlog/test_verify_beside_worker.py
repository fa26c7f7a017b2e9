"""`kaizen-stream verify` beside a real worker process on the same data dir.

Plain verify runs over and over while the worker starts and opens its partitions, and
while it ingests: the worker must come up, own every partition and ingest everything (a
verify that takes the partitions' locks makes an assignment fail: `LogLocked`, handoff
failed, worker crashed). `verify --repair` beside the running worker must refuse in one
line, change nothing, and leave the worker running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    Worker,
    end_offsets,
    indexed,
    produce,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.hotlog.verify import verify_all
from workers.ingest import metrics

from .test_verify_cli import _verify


def _ready(worker: Worker) -> set[int]:
    got = metrics.parse(worker.scrape()).get("kaizen_partition_ready", {})
    return {p for p, flag in got.items() if flag == 1}


def _wait_ready(worker: Worker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _ready(worker) != set(range(TEST_PARTITIONS)):
        assert worker.proc.poll() is None, f"worker died:\n{worker.log_text()[-3000:]}"
        assert time.monotonic() < deadline, f"ready {_ready(worker)}\n{worker.log_text()[-3000:]}"
        time.sleep(0.3)


def test_verify_never_disturbs_a_running_worker(fresh_broker: Broker, tmp_path: Path) -> None:
    bootstrap = fresh_broker.bootstrap
    data = tmp_path / "data"
    sessions = {f"v-{i}": 600 for i in range(16)}
    first = [m for sid, n in sessions.items() for m in session_messages(sid, range(n), [1, 8])]
    asyncio.run(produce(bootstrap, first))
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w1.log")
    try:
        _wait_ready(worker, 120)
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
    finally:
        assert worker.stop() == 0
    # every partition now has a log; the next start opens them all while verify loops
    stop = threading.Event()
    runs: list[int] = []

    def loop() -> None:
        while not stop.is_set():
            verdicts = verify_all(data / "hotlog")
            runs.append(sum(1 for v in verdicts if not v.corrupt))

    # two loops, so that some verify is in a partition directory nearly all the time
    verifiers = [threading.Thread(target=loop) for _ in range(2)]
    for t in verifiers:
        t.start()
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w2.log")
    try:
        _wait_ready(worker, 120)
        more = [
            m for sid, n in sessions.items() for m in session_messages(sid, range(n, n + 50), [4])
        ]
        asyncio.run(produce(bootstrap, more))
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
        stop.set()
        for t in verifiers:
            t.join()
        assert len(runs) > 10 and all(n == TEST_PARTITIONS for n in runs[-3:])
        # the CLI, plain and with --repair, while the worker runs
        plain = _verify(data)
        assert plain.returncode == 0, plain.stdout + plain.stderr
        repair = _verify(data, "--repair")
        assert repair.returncode != 0
        assert "Traceback" not in repair.stderr
        lines = repair.stderr.strip().splitlines()
        assert len(lines) == 1 and "worker" in lines[0] and "--repair" in lines[0], lines
        assert worker.proc.poll() is None
        assert _ready(worker) == set(range(TEST_PARTITIONS))
    finally:
        stop.set()
        for t in verifiers:
            t.join()
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]
    text = worker.log_text()
    assert "handoff failed" not in text and "LogLocked" not in text
    got = indexed(data, TEST_PARTITIONS)
    assert {sid: seqs for sid, (_p, seqs) in got.items()} == {
        sid: list(range(n + 50)) for sid, n in sessions.items()
    }
