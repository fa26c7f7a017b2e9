"""Least privilege on Apache Kafka (SASL_SSL, StandardAuthorizer, exactly the documented ACLs):
each principal does its job and is refused what it must not do."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from tests.procs import stop
from tests.replay.conftest import make_events
from tests.security.kafka_io import (
    child_env,
    fill_spool,
    kaizen,
    read_session,
    replay_when_ready,
    start_worker,
)
from tests.security.secured_kafka import SecuredKafka
from workers.kafka.acls import topics_of
from workers.kafka.errors import KafkaAccessError, check_access, explained
from workers.replay.client import open_follower, start_producer
from workers.settings import DLQ_TOPIC, EVENTS_TOPIC, REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC
from workers.shipper.producer import produce_events


def test_the_shipper_writes_events_and_nothing_else(secured: SecuredKafka) -> None:
    conn = secured.connection("shipper")
    session = f"acl-{uuid.uuid4().hex[:8]}"
    events = make_events(session, 5)

    async def main() -> None:
        assert await produce_events(conn, events) == 5
        with pytest.raises(
            KafkaAccessError, match=r"'shipper' is not authorized for topic kaizen\.events"
        ):
            await check_access(conn, read=[EVENTS_TOPIC])
        for topic in (REPLAY_TOPIC, REPLAY_REQUESTS_TOPIC, DLQ_TOPIC):
            with pytest.raises(KafkaAccessError, match=f"not authorized for topic {topic}"):
                async with explained(conn):
                    await produce_events(conn, events, topic=topic)

    asyncio.run(main())
    assert len(read_session(secured.connection("admin"), session, 5)) == 5


def test_a_replay_client_asks_and_reads_answers_but_not_events(secured: SecuredKafka) -> None:
    conn = secured.connection("replay")

    async def main() -> None:
        with pytest.raises(TopicAuthorizationFailedError):
            await open_follower(conn, EVENTS_TOPIC)
        with pytest.raises(KafkaAccessError, match=r"not authorized for topic kaizen\.events"):
            await check_access(conn, read=[EVENTS_TOPIC])
        with pytest.raises(KafkaAccessError, match="not authorized for consumer group"):
            await check_access(conn, group="kaizen-stream")
        follower = await open_follower(conn, REPLAY_TOPIC)
        await follower.stop()
        producer = await start_producer(conn)
        try:
            await producer.send_and_wait(REPLAY_REQUESTS_TOPIC, b"{}", key=b"k")
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(EVENTS_TOPIC, b"x", key=b"k")
        finally:
            await producer.stop()

    asyncio.run(main())


def test_the_worker_reads_its_topics_but_cannot_write_events(secured: SecuredKafka) -> None:
    conn = secured.connection("worker")

    async def main() -> None:
        # the documented ACLs pass the worker's start check
        await check_access(
            conn,
            read=topics_of("worker", "Read"),
            write=topics_of("worker", "Write"),
            group="kaizen-stream",
        )
        with pytest.raises(KafkaAccessError, match=r"not authorized for topic kaizen\.events"):
            async with explained(conn):
                await produce_events(conn, make_events("w", 1))

    asyncio.run(main())


def test_the_operator_reads_events_but_cannot_write_them(secured: SecuredKafka) -> None:
    conn = secured.connection("operator")

    async def main() -> None:
        await check_access(conn, read=[EVENTS_TOPIC])
        # it may write no topic at all, so the broker refuses it a producer id already
        with pytest.raises(KafkaAccessError, match=r"'operator' .*\(missing ACL\)"):
            async with explained(conn):
                await produce_events(conn, make_events("o", 1))

    asyncio.run(main())


def test_hook_to_replay_over_sasl_ssl_with_least_privilege(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    """Hooks spool, `ship` delivers as shipper, a worker ingests as worker, `replay` as replay."""
    session = f"e2e-{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "spool"
    count = fill_spool(spool, session, 12)
    shipped = kaizen(
        "ship",
        "--give-up",
        "60",
        env=child_env(tmp_path, KAIZEN_SPOOL_DIR=str(spool), **secured.env("shipper")),
    )
    assert shipped.returncode == 0, shipped.stderr
    assert f"{count} events shipped" in shipped.stderr

    log = tmp_path / "worker.log"
    worker = start_worker(child_env(tmp_path, **secured.env("worker")), tmp_path / "data", log)
    try:
        replay_env = child_env(tmp_path, **secured.env("replay"))
        events = replay_when_ready(session, replay_env, worker, log)
        assert [e["seq"] for e in events] == list(range(count))
        deadline = time.monotonic() + 120
        # the worker publishes the session's summary; the replay principal reads it
        team = kaizen("sessions", "--team", env=replay_env)
        while session not in team.stdout and time.monotonic() < deadline:
            time.sleep(1)
            team = kaizen("sessions", "--team", env=replay_env)
        assert session in team.stdout, (team.stdout, team.stderr)
        assert "Traceback" not in log.read_text()
    finally:
        stop(worker)
