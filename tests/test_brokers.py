"""The test brokers themselves: what `wipe()` means, and a three-node cluster surviving a kill -9.

The cluster smoke test is the template for the failover tests: topics at
replication factor 3 with min.insync.replicas=2, producers with acks=all and
every bootstrap host, one node killed mid-stream; nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.brokers import Broker
from workers.broker.apache import KafkaCluster
from workers.settings import ALL_TOPICS, EVENTS_TOPIC


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _produce_one(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(EVENTS_TOPIC, b"x", key=b"k")
    finally:
        await producer.stop()


def test_wipe_is_a_broker_restarted_empty(fresh_broker: Broker) -> None:
    asyncio.run(_produce_one(fresh_broker.bootstrap))
    address = fresh_broker.bootstrap
    fresh_broker.wipe()
    assert fresh_broker.bootstrap == address
    assert not set(ALL_TOPICS) & asyncio.run(_topics(fresh_broker.bootstrap))


async def _leader(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        leader: int = described["partitions"][0]["leader"]
        return leader
    finally:
        await admin.close()


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()


async def _send(producer: AIOKafkaProducer, topic: str, values: range) -> None:
    futures = [await producer.send(topic, str(v).encode()) for v in values]
    await asyncio.gather(*futures)  # acks=all: each one is on two replicas or more


async def _read_all(bootstrap: str, topic: str, expected: int) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got: list[int] = []
        while len(got) < expected:
            batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000), 60)
            got += [int(m.value) for m in batch.get(tp, []) if m.value is not None]
        return got
    finally:
        await consumer.stop()


def test_cluster_keeps_acked_writes_when_the_leader_is_killed(
    kafka_cluster: KafkaCluster,
) -> None:
    topic = "smoke.failover"
    bootstrap = kafka_cluster.bootstrap

    async def scenario() -> list[int]:
        await _create(bootstrap, topic)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            await _send(producer, topic, range(200))
            kafka_cluster.node(await _leader(bootstrap, topic)).kill()
            await _send(producer, topic, range(200, 400))
        finally:
            await producer.stop()
        return await _read_all(bootstrap, topic, 400)

    assert asyncio.run(scenario()) == list(range(400))
