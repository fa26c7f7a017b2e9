"""The one client builder: every bootstrap host, idempotence where granted, compression."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest
from aiokafka import ConsumerRecord
from aiokafka.producer.message_accumulator import BatchBuilder

from tests.brokers import TEST_PARTITIONS, Broker
from tests.ingest.harness import read_to_end
from tests.replay.conftest import make_events
from tests.security.kafka_io import read_session
from tests.security.secured_kafka import SecuredKafka
from workers.broker.embedded import free_port
from workers.codec.event import encode_event
from workers.kafka import clients
from workers.kafka.config import KafkaConnection
from workers.settings import EVENTS_TOPIC
from workers.shipper.producer import produce_events

# a valid event: other tests on the shared brokers decode every record of kaizen.events
PROBE = encode_event(make_events("idempotence-probe", 1)[0])


def test_every_bootstrap_host_is_tried(broker: Broker, unique: str) -> None:
    """The first host is down: the clients still connect through the next one."""
    conn = KafkaConnection((f"127.0.0.1:{free_port()}", broker.bootstrap))
    events = make_events(f"hosts-{unique}", 3)
    assert asyncio.run(produce_events(conn, events)) == 3
    assert len(read_session(conn, f"hosts-{unique}", 3)) == 3


@pytest.mark.tansu  # the embedded broker's quirk: it refuses the idempotent producer
def test_the_embedded_broker_gets_acks_all_without_idempotence(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> bool:
        clients._NO_IDEMPOTENCE.discard(broker.bootstrap)
        producer = await clients.start_producer(KafkaConnection((broker.bootstrap,)))
        try:
            await producer.send_and_wait(EVENTS_TOPIC, PROBE, key=b"idempotence-probe")
            return producer._txn_manager is not None
        finally:
            await producer.stop()

    with caplog.at_level(logging.INFO, logger="workers.kafka.clients"):
        idempotent = asyncio.run(main())
    assert not idempotent
    assert "refused the idempotent producer" in caplog.text


def test_apache_kafka_gets_the_idempotent_compressed_producer(secured: SecuredKafka) -> None:
    async def main() -> tuple[bool, str | None]:
        producer = await clients.start_producer(secured.connection("shipper"), "shipper")
        try:
            await producer.send_and_wait(EVENTS_TOPIC, PROBE, key=b"idempotence-probe")
            return producer._txn_manager is not None, producer._compression_type
        finally:
            await producer.stop()

    idempotent, compression = asyncio.run(main())
    assert idempotent and compression == "zstd"


def test_a_batch_waits_for_its_place_behind_a_stalled_partition(
    fresh_broker: Broker, unique: str
) -> None:
    """`clients.queue_batch`: while a partition's batches cannot drain (its leader stalled by
    SIGSTOP, as a broker in a long GC pause or an election leaves them), a further batch
    waits for its place, where aiokafka's send_batch raises KafkaTimeoutError once the
    request timeout (1 s here) is used up; once the leader answers, each lands once.
    Before queue_batch a burst of concurrent replays ended in status `error` this way."""
    if fresh_broker.kind != "kafka":
        pytest.skip("counts each batch once: needs the idempotent producer (Apache Kafka)")
    pid = fresh_broker.process.pid  # type: ignore[attr-defined]
    key = f"queue-{unique}".encode()

    async def main() -> list[int]:
        conn = KafkaConnection((fresh_broker.bootstrap,))
        producer = await clients.start_producer(conn, request_timeout_ms=1000)
        try:
            await producer.send_and_wait(EVENTS_TOPIC, PROBE, key=key, partition=0)

            def batch() -> BatchBuilder:
                builder = producer.create_batch()
                builder.append(key=key, value=PROBE, timestamp=None)
                return builder

            os.kill(pid, signal.SIGSTOP)
            try:
                # one batch in flight to the stalled leader, one waiting behind it
                queued = [await clients.queue_batch(producer, batch(), EVENTS_TOPIC, 0)]
                queued.append(await clients.queue_batch(producer, batch(), EVENTS_TOPIC, 0))
                third = asyncio.ensure_future(
                    clients.queue_batch(producer, batch(), EVENTS_TOPIC, 0)
                )
                await asyncio.sleep(3)  # three request timeouts: send_batch has given up
                assert not third.done(), third.exception()
            finally:
                os.kill(pid, signal.SIGCONT)
            queued.append(await third)
            metas = await asyncio.gather(*queued)
        finally:
            await producer.stop()
        return [m.offset for m in metas]

    offsets = asyncio.run(main())
    assert len(set(offsets)) == 3
    landed = [
        r.offset
        for r in asyncio.run(_records(fresh_broker.bootstrap))
        if r.partition == 0 and r.key == key
    ]
    assert len(landed) == 4 and set(offsets) <= set(landed)  # the probe and three batches


async def _records(bootstrap: str) -> list[ConsumerRecord[bytes, bytes]]:
    return [r async for r in read_to_end(bootstrap, TEST_PARTITIONS)]
