"""Static membership: a worker restarted within the session timeout keeps its partitions.

Apache Kafka only: the embedded broker mishandles static members, so workers join it as
dynamic ones (workers/broker/cluster.py). Two real worker processes share a group. One is
stopped (SIGTERM) and started again on the same data dir, so with the same group instance id
(workers.settings.default_worker_id).
The other worker sees no rebalance at all (one assignment in its log, its partitions
untouched), the restarted one gets exactly its old partitions back with nothing to catch up
(its log is at the group's committed offset), and events produced around the restart are
all ingested once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.harness import (
    Worker,
    end_offsets,
    indexed,
    produce,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.broker.cluster import cluster_id, static_membership_works
from workers.broker.topics import ensure_topics

PARTITIONS = 4
#: long enough for a worker process to stop and start again on a loaded machine
SESSION_TIMEOUT = 30.0


@pytest.fixture
def broker4(fresh_broker: Any) -> Any:
    cluster = asyncio.run(cluster_id(fresh_broker.bootstrap))
    if not static_membership_works(cluster):
        pytest.skip("the embedded broker mishandles static members (workers/broker/cluster.py)")
    asyncio.run(ensure_topics(fresh_broker.bootstrap, PARTITIONS))
    return fresh_broker


def assignments(worker: Worker) -> list[str]:
    return [line for line in worker.log_text().splitlines() if "assignment: partitions" in line]


def wait_owning(workers: list[Worker], timeout: float) -> list[set[int]]:
    """Each worker's ready partitions once together they hold every partition."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [w.ready_partitions() for w in workers]
        if set().union(*owned) == set(range(PARTITIONS)) and all(owned):
            return owned
        if time.monotonic() > deadline:
            raise AssertionError(f"ready partitions {owned} after {timeout}s")
        time.sleep(0.5)


def test_a_worker_restarted_within_the_session_timeout_keeps_its_partitions(
    broker4: Any, tmp_path: Path
) -> None:
    bootstrap = broker4.bootstrap
    first = [m for s in range(40) for m in session_messages(f"a-{s}", range(30), [1, 8])]
    second = [m for s in range(40) for m in session_messages(f"a-{s}", range(30, 50), [4])]
    asyncio.run(produce(bootstrap, first))

    def start(name: str, log: str, port: int | None = None) -> Worker:
        data = tmp_path / name
        return start_worker(bootstrap, data, PARTITIONS, tmp_path / log, SESSION_TIMEOUT, port=port)

    w1, w2 = start("w1", "w1.log"), start("w2", "w2.log")
    try:
        before = wait_owning([w1, w2], 180)
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, PARTITIONS)), 120)
        w2_assignments = assignments(w2)

        assert w1.stop() == 0
        w1 = start("w1", "w1-restarted.log", w1.port)  # same web port: same member
        asyncio.run(produce(bootstrap, second))
        after = wait_owning([w1, w2], 120)
        ends = asyncio.run(end_offsets(bootstrap, PARTITIONS))
        wait_committed(bootstrap, ends, 120)

        assert after == before
        # the other worker took part in no rebalance: its partitions never moved
        assert assignments(w2) == w2_assignments
        # the restarted one got its partitions back with no handoff: nothing to catch up
        restarted = w1.log_text()
        assert len(assignments(w1)) == 1, restarted
        assert "catching up" not in restarted, restarted
    finally:
        assert w1.stop() == 0
        assert w2.stop() == 0

    # each partition as its owner holds it: a data dir may also keep a partition that
    # moved away while the group first formed, frozen at that point
    sessions = {
        sid: seqs
        for name, owned in zip(("w1", "w2"), after, strict=True)
        for sid, (p, seqs) in indexed(tmp_path / name, PARTITIONS).items()
        if p in owned
    }
    assert sessions == {f"a-{s}": list(range(50)) for s in range(40)}
