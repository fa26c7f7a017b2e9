"""Producing Events to Kafka as per-session batch messages (workers/codec/batch.py).

Invariants:
- Events of one session go in seq order into batch messages of at most
  `max_batch` events and `max_message_bytes` bytes, keyed by session_id, so
  one session lands on one partition in order.
- The producer comes from workers/kafka/clients.py: acks=all, idempotent
  where the broker allows it, compressed; a resend after a failure is safe
  because the worker dedupes on (session_id, seq).
- `send_events` returns only when every message is acknowledged, or raises.
- `deliver` also reports the lowest acknowledged offset per partition, so the
  shipper can check that the acked records are really in the topic (see
  `workers/shipper/shipper.py`: a restarted embedded broker acks records for
  a topic that does not exist yet, and they vanish when it is created).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from workers.codec.batch import join
from workers.codec.event import complete_event, encode_event
from workers.kafka import clients
from workers.settings import EVENTS_TOPIC

MAX_MESSAGE_BYTES = 900_000  # under the broker's default 1 MiB message limit


async def start_producer(target: clients.Target, role: str = "shipper") -> AIOKafkaProducer:
    """A started producer for batch messages (see workers/kafka/clients.py)."""
    return await clients.start_producer(target, role, max_request_size=1 << 20)


def batches(
    events: Iterable[dict[str, Any]],
    *,
    max_batch: int = 128,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> list[tuple[bytes, bytes, int]]:
    """(key, batch message, event count) per message: per session, in seq order."""
    sessions: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        sessions.setdefault(str(event["session_id"]), []).append(event)
    out: list[tuple[bytes, bytes, int]] = []
    for session, evs in sessions.items():
        evs.sort(key=lambda e: int(e["seq"]))
        key = session.encode()
        chunk: list[bytes] = []
        size = 8
        for event in evs:
            item = encode_event(complete_event(event))
            if chunk and (len(chunk) >= max_batch or size + 4 + len(item) > max_message_bytes):
                out.append((key, join(chunk), len(chunk)))
                chunk, size = [], 8
            chunk.append(item)
            size += 4 + len(item)
        if chunk:
            out.append((key, join(chunk), len(chunk)))
    return out


@dataclass
class Delivery:
    """What one send acknowledged: events, and the lowest acked offset per partition."""

    events: int = 0
    first_offsets: dict[int, int] = field(default_factory=dict)


async def deliver(
    producer: AIOKafkaProducer,
    events: Iterable[dict[str, Any]],
    *,
    topic: str = EVENTS_TOPIC,
    max_batch: int = 128,
) -> Delivery:
    """Send without awaiting each message, then wait for every ack."""
    futures = []
    delivery = Delivery()
    for key, message, n in batches(events, max_batch=max_batch):
        futures.append(await producer.send(topic, message, key=key))
        delivery.events += n
    for meta in await asyncio.gather(*futures):
        first = delivery.first_offsets.get(meta.partition)
        if first is None or meta.offset < first:
            delivery.first_offsets[meta.partition] = meta.offset
    return delivery


async def send_events(
    producer: AIOKafkaProducer,
    events: Iterable[dict[str, Any]],
    *,
    topic: str = EVENTS_TOPIC,
    max_batch: int = 128,
) -> int:
    """Send without awaiting each message, then wait for every ack; the events sent."""
    return (await deliver(producer, events, topic=topic, max_batch=max_batch)).events


async def produce_events(
    bootstrap: clients.Target,
    events: Iterable[dict[str, Any]],
    *,
    topic: str = EVENTS_TOPIC,
    max_batch: int = 128,
) -> int:
    """Encode, group per session into batch messages, send with acks=all; events sent."""
    producer = await start_producer(bootstrap, "producer")
    try:
        return await send_events(producer, events, topic=topic, max_batch=max_batch)
    finally:
        await producer.stop()
