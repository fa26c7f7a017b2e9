"""The Faust side of ingest: the group's member for ``kaizen.events``, and dead letters.

The events are read by the live feed (:mod:`workers.ingest.feed`), not by a Faust stream.
Faust's consumer still subscribes to the topic, through an agent over it, so that the
group's co-partitioning assignor gives partition N of ``kaizen.events`` and of
``kaizen.replay.requests`` to the same worker; `FaustMember` pauses its fetching of the
topic at every assignment and commits the offsets the feed made durable. The topic has
acks off in Faust, so Faust itself never commits (nor waits for) an offset of it.

Invariants: the agent processes nothing (a record Faust fetched before the pause took
hold is dropped: the feed reads it); every offset of the events topic committed to the
group comes from `FaustMember.commit`, called by the feed with durable offsets only.
Dead letters go through Faust's producer (`register_ingest` sets the feed's sender).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from aiokafka import TopicPartition

from workers.ingest.assignment import PartitionManager
from workers.ingest.dlq import DeadLetter
from workers.settings import DLQ_TOPIC

log = logging.getLogger(__name__)

AGENT_NAME = "kaizen-ingest"


class FaustMember:
    """The worker's member of the consumer group, as the live feed needs it.

    Faust's aiokafka consumer runs in a thread of its own; the calls go through it."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    async def commit(self, offsets: Mapping[int, int]) -> bool:
        """Commit for the group (partitions no longer assigned are left out by Faust; a
        commit refused because the group rebalanced meanwhile returns False)."""
        tps = {faust.types.TP(self.topic, p): offset for p, offset in offsets.items()}
        consumer: Any = self.app.consumer  # the aiokafka driver's Consumer
        return bool(await consumer._commit(tps))

    async def pause_fetching(self, partitions: Iterable[int]) -> None:
        """Pause the partitions in Faust's aiokafka consumer (not only in Faust's own view
        of them, which Faust resumes after every rebalance): it fetches nothing of them."""
        consumer: Any = self.app.consumer
        thread = consumer._thread
        wanted = {TopicPartition(self.topic, p) for p in partitions}

        async def pause() -> None:
            aio = thread._ensure_consumer()
            aio.pause(*(wanted & aio.assignment()))

        await thread.call_thread(pause)


def register_ingest(app: faust.App, manager: PartitionManager, dlq_topic: str = DLQ_TOPIC) -> Any:
    """Subscribe the app to ``manager.topic`` for the group and wire dead letters and the
    group's member into the manager's live feed; returns the (idle) agent."""
    source = app.topic(
        manager.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        acks=False,
    )
    dlq = app.topic(
        dlq_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def send_dead_letter(letter: DeadLetter) -> Any:
        return await dlq.send(key=letter.key, value=letter.value, headers=letter.headers)

    manager.feed.send_dead_letter = send_dead_letter
    manager.feed.member = FaustMember(app, manager.topic)

    @app.agent(source, name=AGENT_NAME)
    async def ingest(stream: Any) -> None:
        async for _ in stream.events():
            pass  # fetched before its partition was paused: the live feed reads it

    return ingest
