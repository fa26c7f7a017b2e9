"""Replay requests against a real worker: targets, clocks, pacing gaps, one answer per request."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.replay.conftest import TARGET_PREFIX, Worker, as_messages, make_events, produce
from workers.broker.topics import ensure_topics
from workers.ingest.dlq import header_dict
from workers.replay import formats
from workers.replay.client import ReplayClient, open_follower
from workers.replay.formats import ReplayRequest
from workers.replay.service import ReplayService
from workers.settings import DLQ_TOPIC, REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC

WAIT = 60.0  # seconds: generous, the machine is shared


async def _send_raw(bootstrap: str, record: dict[str, Any], **send: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            REPLAY_REQUESTS_TOPIC,
            formats.request_codec().encode(record),
            key=str(record["session_id"]).encode(),
            **send,
        )
    finally:
        await producer.stop()


async def _end_markers(consumer: Any, request_ids: set[str], until: float) -> Counter[str]:
    """How many end markers each of `request_ids` got on the followed topics until `until`."""
    ends: Counter[str] = Counter()
    while time.monotonic() < until:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                headers = formats.header_map(record.headers)
                end = formats.parse_end(headers)
                if end is not None and end.request_id in request_ids:
                    ends[end.request_id] += 1
    return ends


def test_a_sender_whose_clock_is_behind_is_answered(worker: Worker, unique: str) -> None:
    """The record timestamp of a producer ten minutes behind says the request is old; it
    reached the partition while the worker followed it, so the worker answers it."""
    bootstrap = worker.broker.bootstrap
    request = ReplayRequest(f"late-{unique}", f"late-{unique}")

    async def main() -> None:
        replies = await open_follower(bootstrap, REPLAY_TOPIC)
        try:
            behind = int(time.time() * 1000) - 10 * 60_000
            await _send_raw(bootstrap, request.to_record(), timestamp_ms=behind)
            deadline = time.monotonic() + WAIT
            ends: Counter[str] = Counter()
            while not ends and time.monotonic() < deadline:
                ends = await _end_markers(replies, {request.request_id}, time.monotonic() + 1)
            assert ends == {request.request_id: 1}
        finally:
            await replies.stop()

    asyncio.run(main())


def test_only_a_backlog_request_is_judged_by_its_age() -> None:
    """Pure decision: a request met in the backlog (before the fast path's start on its
    partition) is skipped when older than max_age_s; one that arrived later never is."""
    service = ReplayService("127.0.0.1:1", manager=None, max_age_s=300)  # type: ignore[arg-type]
    try:
        now = int(time.time() * 1000)
        ancient, recent = now - 3_600_000, now - 1_000
        assert service._too_old(0, 5, ancient)  # nothing followed yet: the timestamp decides
        assert not service._too_old(0, 5, recent)
        service._live_from[0] = 100
        assert service._too_old(0, 99, ancient)
        assert not service._too_old(0, 100, ancient)  # arrived while followed
        assert not service._too_old(1, 5, None)
    finally:
        asyncio.run(service.stop())


def test_paced_replay_caps_long_gaps(worker: Worker, unique: str) -> None:
    """Ten hours between two events at speed 1: the replay still ends (the gap is capped),
    well inside the client's 30 s silence limit."""
    sid = f"gap-{unique}"
    produced = make_events(sid, 4)
    for i, event in enumerate(produced):
        event["ts_ms"] = 1_760_000_000_000 + (i // 2) * 10 * 3_600_000 + i % 2
    asyncio.run(produce(worker.broker.bootstrap, as_messages(produced, 4)))

    async def main() -> None:
        async with ReplayClient(worker.broker.bootstrap, timeout=30) as client:
            deadline = time.monotonic() + WAIT
            while True:
                events, result = await client.collect(sid)
                if len(events) == 4 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            events, result = await client.collect(sid, pacing="original", speed=1.0)
            assert [e.seq for e in events] == [0, 1, 2, 3]
            assert result.end.status == "ok" and result.complete

    asyncio.run(main())


def test_targets_outside_the_prefix_are_refused_at_once(worker: Worker, unique: str) -> None:
    """Allowed: kaizen.replay and topics under KAIZEN_REPLAY_TOPIC_PREFIX. Any other target,
    or none, gets an error end marker on kaizen.replay, which the client hears: no time-out."""
    bootstrap = worker.broker.bootstrap
    sid = f"target-{unique}"
    allowed, refused = f"{TARGET_PREFIX}{unique}", f"elsewhere.{unique}"
    asyncio.run(ensure_topics(bootstrap, 1, [allowed, refused]))
    asyncio.run(produce(bootstrap, as_messages(make_events(sid, 3))))

    async def main() -> None:
        async with ReplayClient(bootstrap, target_topic=allowed, timeout=WAIT) as client:
            deadline = time.monotonic() + WAIT
            events: list[Any] = []
            while len(events) < 3 and time.monotonic() < deadline:
                events, result = await client.collect(sid)
            assert [e.seq for e in events] == [0, 1, 2] and result.end.status == "ok"
        async with ReplayClient(bootstrap, target_topic=refused, timeout=WAIT) as client:
            events, result = await client.collect(sid)
            assert events == [] and result.end.status == "error"
            assert "bad_target" in result.end.error and refused in result.end.error
        # no target at all (a hand-made request): answered on kaizen.replay too
        replies = await open_follower(bootstrap, REPLAY_TOPIC)
        try:
            request = ReplayRequest(f"none-{unique}", sid).to_record() | {"target_topic": ""}
            await _send_raw(bootstrap, request)
            deadline = time.monotonic() + WAIT
            while True:
                ends = await _end_markers(replies, {request["request_id"]}, time.monotonic() + 1)
                if ends or time.monotonic() > deadline:
                    break
            assert ends == {request["request_id"]: 1}
        finally:
            await replies.stop()

    asyncio.run(main())
    cli = worker.cli("replay", sid, "--topic", refused, "--timeout", str(WAIT))
    assert cli.returncode == 1, cli.stderr
    assert "may not go to" in cli.stderr and cli.stderr.count("\n") == 1


def test_each_request_is_answered_once_across_the_two_paths(worker: Worker, unique: str) -> None:
    """Both the Faust agent and the low-latency path read every request; each request id,
    valid or refused, gets exactly one end marker. The requests share one key (so one
    partition, in order); a last, undecodable one is dead-lettered by the agent only, so once
    its dead letter is out the agent has also handled every request before it."""
    bootstrap = worker.broker.bootstrap
    sid = f"once-{unique}"
    asyncio.run(produce(bootstrap, as_messages(make_events(sid, 5))))
    valid = [ReplayRequest(f"once-{unique}-{i}", sid).to_record() for i in range(6)]
    refused = [
        ReplayRequest(f"once-{unique}-bad-{i}", sid).to_record() | {"target_topic": "nowhere"}
        for i in range(2)
    ]
    ids = {str(r["request_id"]) for r in valid + refused}

    async def main() -> None:
        replies = await open_follower(bootstrap, REPLAY_TOPIC)
        dlq = await open_follower(bootstrap, DLQ_TOPIC)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for record in valid[:3] + refused + valid[3:]:
                value = formats.request_codec().encode(record)
                await producer.send_and_wait(REPLAY_REQUESTS_TOPIC, value, key=sid.encode())
            sentinel = f"sentinel {unique}".encode()
            await producer.send_and_wait(REPLAY_REQUESTS_TOPIC, sentinel, key=sid.encode())
            deadline = time.monotonic() + WAIT
            seen_by_agent = False
            while not seen_by_agent and time.monotonic() < deadline:
                for records in (await dlq.getmany(timeout_ms=300)).values():
                    for record in records:
                        if record.value and sentinel in record.value:
                            assert header_dict(record.headers)["reason"] == "bad_marker"
                            seen_by_agent = True
            assert seen_by_agent, "the agent never dead-lettered the sentinel"
            # both paths have now seen every request; give their answers time to land
            ends = await _end_markers(replies, ids, time.monotonic() + 5)
        finally:
            await producer.stop()
            await replies.stop()
            await dlq.stop()
        assert ends == dict.fromkeys(ids, 1)

    asyncio.run(main())
