"""The epoch probe: is the message ingested first in an epoch still at its offset?"""

from __future__ import annotations

import asyncio
from pathlib import Path

import crc32c

from tests.brokers import Broker
from tests.ingest.harness import event, produce
from workers.ingest import epoch as epochs
from workers.ingest.assignment import PartitionManager
from workers.ingest.partition import PartitionState
from workers.settings import Settings


def test_probe_tells_a_new_incarnation(broker: Broker, tmp_path: Path, unique: str) -> None:
    sid = f"probe-{unique}"
    value = event(sid, 0)
    asyncio.run(produce(broker.bootstrap, [(sid, value)]))
    manager = PartitionManager(Settings(broker=broker.bootstrap, data_dir=tmp_path, partitions=4))
    p = manager.partition_for(sid)

    async def check(probe_offset: int, crc: int) -> bool:
        state = PartitionState(p, tmp_path / "x")
        state.epoch = epochs.Epoch(0, probe_offset, crc)
        return await manager.catchup.probe_matches(state)

    async def offset_of_value() -> int:
        # the shared test broker holds other tests' messages too: find ours
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tp = TopicPartition("kaizen.events", p)
            consumer.assign([tp])
            while True:
                got = await consumer.getmany(tp, timeout_ms=1000)
                for rec in got.get(tp, []):
                    if rec.value == value:
                        return rec.offset
        finally:
            await consumer.stop()

    offset = asyncio.run(offset_of_value())
    assert asyncio.run(check(offset, crc32c.crc32c(value)))  # same broker, same message
    assert not asyncio.run(check(offset, crc32c.crc32c(value) ^ 1))  # other data there
    assert not asyncio.run(check(10_000_000, 0))  # the topic is shorter than it was
