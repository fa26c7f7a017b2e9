"""Offsets that go back: a new broker or topic incarnation never makes a new event look old.

A broker restarted empty, or the events topic deleted and recreated, numbers offsets from
0 again while the worker's watermark says, e.g., 1200. The worker tells it from what the
broker reports (cluster id, topic id, log end offset against the watermark), starts a new
epoch and falls back to the (session_id, seq) dedupe: every new event is kept, whatever
its offset. The group's committed offsets going away alone (expired) is *not* a new
incarnation: nothing is read into the log twice and no dead letter is sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from tests.brokers import Broker, new_broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    GROUP,
    Worker,
    delete_topic,
    event,
    indexed,
    log_events,
    produce,
    read_dlq,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.broker.topics import ensure_topics
from workers.codec import batch
from workers.ingest.catchup import CatchUp
from workers.ingest.config import IngestConfig
from workers.ingest.feed import LiveFeed
from workers.ingest.partition import PartitionState
from workers.settings import DLQ_TOPIC, EVENTS_TOPIC

#: Group not empty yet: a static member stays until its session times out
NON_EMPTY_GROUP = 68


@pytest.fixture
def operated_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker as operators run one: topics are made by `kaizen-stream topics create`, never
    by a client's metadata request (Apache Kafka's auto.create.topics.enable is on by
    default, and a worker's consumer would make a deleted topic again with one partition)."""
    b = new_broker(tmp_path / "broker", kafka_properties={"auto.create.topics.enable": "false"})
    yield b
    b.stop()


def ingest_all(broker: Broker, data: Path, log: Path, ends: dict[int, int]) -> None:
    """Run a worker until the group has committed `ends` (partition -> end offset: what
    `produce` counted into a new topic, not read back, which takes polls that come back
    empty on a loaded machine for the end)."""
    worker = start_worker(broker.bootstrap, data, TEST_PARTITIONS, log)
    try:
        wait_committed(broker.bootstrap, ends, timeout=90)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]


def second_life() -> list[tuple[str, bytes]]:
    """Old sessions going on (their last 50 events shipped again) and new ones, in few
    messages: all of them land at offsets below the first life's watermark."""
    out = []
    for s in range(16):
        out += session_messages(f"old-{s}", range(250, 400), [25])
        out += session_messages(f"new-{s}", range(120), [7, 64])
    return out


def assert_both_lives(data: Path) -> None:
    after = indexed(data, TEST_PARTITIONS)
    for s in range(16):
        assert after[f"old-{s}"][1] == list(range(400))
        assert after[f"new-{s}"][1] == list(range(120))
    copies = log_events(data, TEST_PARTITIONS)
    assert max(copies.values()) == 1, [k for k, n in copies.items() if n > 1][:10]


def test_new_broker_incarnation_loses_nothing(fresh_broker: Broker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = []
    for s in range(16):
        first += session_messages(f"old-{s}", range(300), [1, 10, 50])
    ends = asyncio.run(produce(fresh_broker.bootstrap, first))
    ingest_all(fresh_broker, data, tmp_path / "w1.log", ends)
    before = indexed(data, TEST_PARTITIONS)
    assert all(len(seqs) == 300 for _, seqs in before.values())

    fresh_broker.wipe()  # topics, offsets and the group are gone
    asyncio.run(ensure_topics(fresh_broker.bootstrap, TEST_PARTITIONS))
    ends = asyncio.run(produce(fresh_broker.bootstrap, second_life()))
    ingest_all(fresh_broker, data, tmp_path / "w2.log", ends)

    assert_both_lives(data)
    log = (tmp_path / "w2.log").read_text()
    assert "new broker incarnation" in log
    assert "topic id" in log or "cluster id" in log  # told by what the broker reports


def wait_ingested(worker: Worker, total: int, timeout: float = 120) -> None:
    """Until the running worker has ingested `total` events (its counters), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        got = worker.metrics().get("kaizen_ingest_ingested_total", 0)
        if got >= total:
            return
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert time.monotonic() < deadline, (
            f"ingested {got} of {total} events\n" + worker.log_text()[-4000:]
        )
        time.sleep(0.5)


def test_topic_recreated_while_the_worker_runs(operated_broker: Broker, tmp_path: Path) -> None:
    bootstrap = operated_broker.bootstrap
    data = tmp_path / "data"
    first = []
    for s in range(16):
        first += session_messages(f"old-{s}", range(300), [1])  # one message per event
    asyncio.run(produce(bootstrap, first))
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w.log")
    try:
        wait_ingested(worker, 16 * 300)
        asyncio.run(delete_topic(bootstrap, EVENTS_TOPIC))
        asyncio.run(ensure_topics(bootstrap, TEST_PARTITIONS))
        ends = asyncio.run(produce(bootstrap, second_life()))
        # every event of the second life is new but for seqs 250..299 of the old sessions
        wait_ingested(worker, 16 * 300 + 16 * 100 + 16 * 120)
        wait_committed(bootstrap, ends, timeout=90)
    finally:
        code = worker.stop()
    log = worker.log_text()
    assert code == 0, log[-3000:]
    assert_both_lives(data)
    assert "topic id" in log


async def produce_to(bootstrap: str, partition: int, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(EVENTS_TOPIC, value, partition=partition)
    finally:
        await producer.stop()


@pytest.mark.parametrize("more", [False, True], ids=["fewer-records", "more-records"])
def test_the_live_feed_reads_a_topic_made_again_from_its_start(
    operated_broker: Broker, tmp_path: Path, more: bool
) -> None:
    """The events topic deleted and made again under the live feed: with fewer records than
    the old position (the broker answers "offset out of range") or already more (no fetch
    error at all: only the topic id tells it), the partition goes back to the catch-up, a new
    epoch begins and every event of the new topic is stored, none of the old one again."""
    bootstrap = operated_broker.bootstrap
    config = IngestConfig(incarnation_every_s=0.2, group_commit_every_s=0.1)

    async def main() -> tuple[list[int], list[int], int]:
        await ensure_topics(bootstrap, TEST_PARTITIONS)
        await produce_to(bootstrap, 0, [event("old", q) for q in range(5)])
        state = PartitionState(0, tmp_path / "p0", config=config)
        catchup = CatchUp(bootstrap, EVENTS_TOPIC, None, config)
        await catchup.handoff(state)  # the old topic in the log, its topic id in the epoch
        rechecks: list[str] = []

        async def letter(_: object) -> asyncio.Future[None]:
            raise AssertionError("no dead letter expected")

        def recheck(s: PartitionState, reason: str) -> None:
            async def again() -> None:
                async with s.lock:
                    await catchup.rejoin(s)
                feed.add(s)

            rechecks.append(reason)
            tasks.append(asyncio.ensure_future(again()))

        tasks: list[asyncio.Future[None]] = []
        feed = LiveFeed(
            bootstrap,
            EVENTS_TOPIC,
            config,
            recheck=recheck,
            stops_for=lambda exc: False,
        )
        feed.send_dead_letter = letter
        state.ready.set()
        feed.add(state)
        running = asyncio.ensure_future(feed.run())
        try:
            await delete_topic(bootstrap, EVENTS_TOPIC)
            await ensure_topics(bootstrap, TEST_PARTITIONS)
            new = [batch.join([event("new", q) for q in range(3)]), event("new", 3)]
            if more:
                new += [event("new", q) for q in range(4, 12)]
            await produce_to(bootstrap, 0, new)
            deadline = time.monotonic() + 60
            while len([q for q, _ in state.read_session("new")]) < (12 if more else 4):
                assert time.monotonic() < deadline, f"rechecks {rechecks}"
                assert not running.done(), running
                await asyncio.sleep(0.1)
                async with state.lock:  # the worker's flusher does this on time
                    await state.flush()
            return (
                [q for q, _ in state.read_session("new")],
                [q for q, _ in state.read_session("old")],
                len(rechecks),
            )
        finally:
            feed.stop()
            await running
            for task in tasks:
                await task
            state.close()

    new, old, rechecks = asyncio.run(main())
    assert new == list(range(12 if more else 4))
    assert old == list(range(5))
    assert rechecks >= 1


async def delete_group(bootstrap: str, group: str, timeout: float = 60) -> None:
    """Delete the consumer group and its committed offsets (as offsets.retention.minutes does
    to a group left empty), once its last (static) member has timed out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        deadline = time.monotonic() + timeout
        while True:
            response = await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
            [(_, error)] = response.results
            if error == 0:
                return
            assert error == NON_EMPTY_GROUP, f"DeleteGroups: error {error}"
            assert time.monotonic() < deadline, "the group never became empty"
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def test_expired_group_offsets_dead_letter_nothing_again(
    fresh_broker: Broker, tmp_path: Path
) -> None:
    bootstrap = fresh_broker.bootstrap
    data = tmp_path / "data"
    messages = []
    for s in range(8):
        messages += session_messages(f"s-{s}", range(100), [1, 9])
        messages.append((f"s-{s}", b"\x00\x01not an event " + bytes([s])))
    ends = asyncio.run(produce(bootstrap, messages))
    ingest_all(fresh_broker, data, tmp_path / "w1.log", ends)
    letters = asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC))
    assert len(letters) == 8

    asyncio.run(delete_group(bootstrap, GROUP))
    more = [(f"s-{s}", event(f"s-{s}", 100)) for s in range(8)]
    added = asyncio.run(produce(bootstrap, more))
    ends = {p: ends.get(p, 0) + added.get(p, 0) for p in range(TEST_PARTITIONS)}
    ingest_all(fresh_broker, data, tmp_path / "w2.log", ends)

    assert len(asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC))) == 8
    after = indexed(data, TEST_PARTITIONS)
    assert {sid: seqs for sid, (_, seqs) in after.items()} == {
        f"s-{s}": list(range(101)) for s in range(8)
    }
    assert max(log_events(data, TEST_PARTITIONS).values()) == 1
    assert "new broker incarnation" not in (tmp_path / "w2.log").read_text()
