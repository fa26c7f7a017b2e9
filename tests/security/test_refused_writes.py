"""A Write ACL removed while the worker runs: one line naming it in the worker's log, no
traceback, and nothing lost once the ACL is back."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.procs import stop
from tests.replay.conftest import make_events
from tests.security.kafka_io import (
    child_env,
    kaizen,
    reading,
    replay_when_ready,
    start_worker,
    wait_until_write,
)
from tests.security.secured_kafka import SecuredKafka
from workers.kafka import clients
from workers.kafka.acls import Grant, kafka_acls_command
from workers.kafka.config import KafkaConnection
from workers.settings import DLQ_TOPIC, EVENTS_TOPIC, SESSIONS_TOPIC
from workers.shipper.producer import produce_events

POISON = b"\xffnot an event"


async def _send_poison_then_events(conn: KafkaConnection, session: str, count: int) -> None:
    """A message the worker must dead-letter, then `count` good events behind it on the
    same partition (same key)."""
    producer = await clients.start_producer(conn, "test")
    try:
        await producer.send_and_wait(EVENTS_TOPIC, POISON, key=session.encode())
    finally:
        await producer.stop()
    assert await produce_events(conn, make_events(session, count)) == count


async def _dead_letters(conn: KafkaConnection) -> list[bytes]:
    """Every value in the dead-letter topic."""
    values: list[bytes] = []
    async with reading(conn, DLQ_TOPIC) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                values += [r.value for r in records if r.value is not None]
    return values


def _one_refusal(log: Path, grant: Grant) -> None:
    """The log names the refused write in exactly one line (with the ACL), no traceback."""
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
    refused = [line for line in text.splitlines() if f"write topic {grant.name}" in line]
    assert len(refused) == 1, text[-4000:]
    assert "user 'worker' is not authorized to write topic" in refused[0]
    assert refused[0].rstrip().endswith(kafka_acls_command("worker", grant)), refused[0]


@contextlib.contextmanager
def ready_worker(
    secured: SecuredKafka, tmp_path: Path
) -> Iterator[tuple[Callable[[], subprocess.Popen[bytes]], Path]]:
    """(start, log): `start()` starts a worker as the worker principal on one data dir and
    returns it once it answers a replay; every worker started is stopped after the block."""
    env = child_env(tmp_path, **secured.env("worker"))
    replay_env = child_env(tmp_path, **secured.env("replay"))
    log = tmp_path / "worker.log"
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        ready = f"ready-{uuid.uuid4().hex[:8]}"
        asyncio.run(produce_events(secured.connection("shipper"), make_events(ready, 3)))
        started.append(start_worker(env, tmp_path / "data", log))
        assert len(replay_when_ready(ready, replay_env, started[-1], log)) == 3
        return started[-1]

    try:
        yield start, log
    finally:
        for worker in started:
            stop(worker)


def test_a_dead_letter_refused_at_run_time_is_one_line_and_loses_nothing(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    replay_env = child_env(tmp_path, **secured.env("replay"))
    shipper, worker_conn = secured.connection("shipper"), secured.connection("worker")
    session = f"refused-{uuid.uuid4().hex[:8]}"
    grant = Grant("topic", DLQ_TOPIC, ("Write",))
    with ready_worker(secured, tmp_path) as (start, log):
        worker = start()
        with secured.without("worker", grant):
            wait_until_write(worker_conn, DLQ_TOPIC, allowed=False)
            asyncio.run(_send_poison_then_events(shipper, session, 4))
            # the worker may not commit past the message it cannot dead-letter: it stops
            assert worker.wait(180) != 0
        _one_refusal(log, grant)

        # the ACL is back: a new worker dead-letters the message and ingests what followed
        wait_until_write(worker_conn, DLQ_TOPIC, allowed=True)
        worker = start()
        events = replay_when_ready(session, replay_env, worker, log)
        assert [e["seq"] for e in events] == list(range(4))
        deadline = time.monotonic() + 60
        while POISON not in b"".join(asyncio.run(_dead_letters(secured.connection("admin")))):
            assert time.monotonic() < deadline, "the refused dead letter was never written"
            time.sleep(1)
    assert "Traceback" not in log.read_text()


def test_a_summary_refused_at_run_time_is_one_line_and_published_once_allowed(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    """The worker keeps ingesting; the summary waits (marked unpublished) for the ACL."""
    replay_env = child_env(tmp_path, **secured.env("replay"))
    session = f"summary-{uuid.uuid4().hex[:8]}"
    grant = Grant("topic", SESSIONS_TOPIC, ("Write",))
    worker_conn = secured.connection("worker")
    with ready_worker(secured, tmp_path) as (start, log):
        worker = start()
        with secured.without("worker", grant):
            wait_until_write(worker_conn, SESSIONS_TOPIC, allowed=False)
            asyncio.run(produce_events(secured.connection("shipper"), make_events(session, 4)))
            assert len(replay_when_ready(session, replay_env, worker, log)) == 4
            deadline = time.monotonic() + 120
            while f"write topic {SESSIONS_TOPIC}" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                assert worker.poll() is None, log.read_text()[-4000:]
                time.sleep(1)
        wait_until_write(worker_conn, SESSIONS_TOPIC, allowed=True)
        team = kaizen("sessions", "--team", env=replay_env)
        while session not in team.stdout:
            assert time.monotonic() < deadline + 120, (team.stdout, team.stderr)
            time.sleep(1)
            team = kaizen("sessions", "--team", env=replay_env)
        assert worker.poll() is None
        _one_refusal(log, grant)
