"""The partition manager on a rebalance: a newly assigned partition has its state at once.

Faust resumes fetching while the receivers of ``on_partitions_assigned`` still run (its
recovery task does not wait for them: the worker logs of tests/ingest/test_rebalance.py show
"Worker ready" while the manager is still closing a partition that went elsewhere). The agent
drops a message of a partition without a state (never acked), which stalls the partition's
commits and lets the watermark pass the message. So the manager must create the states of
new partitions before anything it awaits, here closing the partitions that went elsewhere
(slow at the test point ``close-slowly``, as when it waits for a cancelled catch-up).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faust.types import TP

from tests.brokers import Broker
from workers.ingest import testpoint
from workers.ingest.assignment import PartitionManager
from workers.settings import EVENTS_TOPIC, Settings


def test_new_partition_has_its_state_while_a_gone_one_closes(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(testpoint, "ARMED", testpoint.CLOSE_SLOWLY)

    async def scenario() -> None:
        settings = Settings(broker=broker.bootstrap, data_dir=tmp_path, partitions=4)
        manager = PartitionManager(settings)
        await manager.on_partitions_assigned({TP(EVENTS_TOPIC, 0)})
        await manager.wait_ready(0, timeout=60)
        # one rebalance takes partition 0 and gives partition 1
        rebalance = asyncio.ensure_future(manager.on_partitions_assigned({TP(EVENTS_TOPIC, 1)}))
        try:
            await asyncio.sleep(0.2)
            assert not rebalance.done(), "partition 0 closed at once: the test point is off"
            assert manager.get(1) is not None, "partition 1 has no state while 0 closes"
        finally:
            await rebalance
            await manager.on_stop()
        assert manager.owned() == []

    asyncio.run(scenario())
