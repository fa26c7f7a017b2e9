"""The one client builder: every bootstrap host, idempotence where granted, compression."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.brokers import Broker
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
