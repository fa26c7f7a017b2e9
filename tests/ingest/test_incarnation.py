"""A broker restarted empty numbers offsets from 0 again: nothing new may be skipped.

The worker's watermark says, e.g., 300 while the new broker's offsets start at 0;
the worker must notice the new incarnation (the group has no committed offset but
the partition has local data) and fall back to the (session_id, seq) dedupe.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    end_offsets,
    indexed,
    produce,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.broker.topics import ensure_topics


def ingest_all(broker: Broker, data: Path, log: Path) -> None:
    worker = start_worker(broker.bootstrap, data, TEST_PARTITIONS, log)
    try:
        ends = asyncio.run(end_offsets(broker.bootstrap, TEST_PARTITIONS))
        wait_committed(broker.bootstrap, ends, timeout=90)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]


def test_new_broker_incarnation_loses_nothing(fresh_broker: Broker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = []
    for s in range(16):
        first += session_messages(f"old-{s}", range(300), [1, 10, 50])
    asyncio.run(produce(fresh_broker.bootstrap, first))
    ingest_all(fresh_broker, data, tmp_path / "w1.log")
    before = indexed(data, TEST_PARTITIONS)
    assert all(len(seqs) == 300 for _, seqs in before.values())

    fresh_broker.wipe()  # topics, offsets and the group are gone
    asyncio.run(ensure_topics(fresh_broker.bootstrap, TEST_PARTITIONS))
    second = []
    for s in range(16):
        # old sessions go on (and their first events are shipped again), new ones start
        second += session_messages(f"old-{s}", range(250, 400), [1, 25])
        second += session_messages(f"new-{s}", range(120), [1, 7, 64])
    asyncio.run(produce(fresh_broker.bootstrap, second))
    ingest_all(fresh_broker, data, tmp_path / "w2.log")

    after = indexed(data, TEST_PARTITIONS)
    for s in range(16):
        assert after[f"old-{s}"][1] == list(range(400))
        assert after[f"new-{s}"][1] == list(range(120))
    log = (tmp_path / "w2.log").read_text()
    assert "new broker incarnation" in log
