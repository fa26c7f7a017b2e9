"""One partition catching up holds up neither the other partitions' ingest nor loses a message.

Partition A has no committed offset in the group, so a worker with an empty data dir catches
it up "to the end", which it reaches only when its polls come back empty; a producer keeps
trickling events of a session on A, so A stays catching up for as long as the test wants,
while Faust delivers A's messages to the ingest agent from the earliest offset. Meanwhile
new events of a session on partition B must be ingested and replayable. Then the trickle
stops: A's catch-up ends, the messages the agent received for A meanwhile (held, never
dropped) are ingested after it, and A's session replays in full and in order. On Apache
Kafka, whose end offsets are exact, A's catch-up ends at the end offset it saw when it began,
so A serves while the trickle still runs.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import end_offsets
from tests.procs import stop
from tests.replay.conftest import as_messages, make_events, produce, replay_until, start_worker
from workers.broker.cluster import cluster_id, is_embedded
from workers.codec.event import encode_event
from workers.ingest.assignment import partition_for_key
from workers.replay.client import ReplayClient
from workers.settings import EVENTS_TOPIC


def session_on(partition: int, tag: str) -> str:
    for i in range(10_000):
        sid = f"{tag}-{i}"
        if partition_for_key(sid.encode(), TEST_PARTITIONS) == partition:
            return sid
    raise AssertionError("no session id found")


async def commit(bootstrap: str, group: str, offsets: dict[int, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = {TopicPartition(EVENTS_TOPIC, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in tps.items()})
    finally:
        await consumer.stop()


def test_a_partition_catching_up_does_not_hold_up_the_others(
    fresh_broker: Any, tmp_path: Path
) -> None:
    bootstrap = fresh_broker.bootstrap
    tag = uuid.uuid4().hex[:6]
    group = f"per-partition-{tag}"
    slow, fast = session_on(0, f"slow-{tag}"), session_on(1, f"fast-{tag}")
    slow_events, fast_events = make_events(slow, 5000), make_events(fast, 200)
    log = tmp_path / "worker.log"
    sent = 300

    async def trickle(stop_now: asyncio.Event) -> None:
        """A's events one message at a time, 100 ms apart, until told to stop."""
        nonlocal sent
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            while not stop_now.is_set() and sent < len(slow_events):
                event = encode_event(slow_events[sent])
                await producer.send_and_wait(EVENTS_TOPIC, event, key=slow.encode())
                sent += 1
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    async def main() -> None:
        exact_ends = not is_embedded(await cluster_id(bootstrap))
        await produce(bootstrap, as_messages(slow_events[:sent], 20))
        await produce(bootstrap, as_messages(fast_events[:100], 20))
        ends = await end_offsets(bootstrap, TEST_PARTITIONS)
        await commit(bootstrap, group, {p: e for p, e in ends.items() if p != 0})
        stop_trickle = asyncio.Event()
        trickling = asyncio.ensure_future(trickle(stop_trickle))
        worker = start_worker(fresh_broker, tmp_path / "data", group, log)
        try:
            async with ReplayClient(bootstrap, timeout=90) as client:
                # B's catch-up is done and its new events flow while A is still catching up
                await replay_until(client, fast, 100, timeout=180)
                await produce(bootstrap, as_messages(fast_events[100:], 10))
                got, _ = await replay_until(client, fast, 200, timeout=60)
                assert [r.value for r in got] == [encode_event(e) for e in fast_events]
                if exact_ends:
                    # Apache Kafka: A's catch-up read to the end-offset snapshot taken when
                    # it began, so A serves while its producer writes on
                    got, _ = await replay_until(client, slow, 300, timeout=60)
                    assert len(got) >= 300
                    assert not trickling.done()
                stop_trickle.set()
                await trickling
                got, _ = await replay_until(client, slow, sent, timeout=90)
                assert [r.value for r in got] == [encode_event(e) for e in slow_events[:sent]]
        finally:
            stop_trickle.set()
            await trickling
            assert stop(worker) == 0, log.read_text()[-3000:]

    asyncio.run(main())
