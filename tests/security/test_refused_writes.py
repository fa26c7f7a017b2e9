"""A Write ACL removed while the worker runs: one line naming it in the worker's log, no
traceback, and nothing lost once the ACL is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from tests.procs import stop
from tests.replay.conftest import make_events
from tests.security.kafka_io import (
    child_env,
    reading,
    replay_when_ready,
    start_worker,
    wait_until_write,
)
from tests.security.secured_kafka import SecuredKafka
from workers.kafka import clients
from workers.kafka.acls import Grant, kafka_acls_command
from workers.kafka.config import KafkaConnection
from workers.settings import DLQ_TOPIC, EVENTS_TOPIC
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


def test_a_dead_letter_refused_at_run_time_is_one_line_and_loses_nothing(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    worker_env = child_env(tmp_path, **secured.env("worker"))
    replay_env = child_env(tmp_path, **secured.env("replay"))
    shipper, worker_conn = secured.connection("shipper"), secured.connection("worker")
    data, log = tmp_path / "data", tmp_path / "worker.log"
    ready = f"ready-{uuid.uuid4().hex[:8]}"
    asyncio.run(produce_events(shipper, make_events(ready, 3)))
    worker = start_worker(worker_env, data, log)
    session = f"refused-{uuid.uuid4().hex[:8]}"
    try:
        assert len(replay_when_ready(ready, replay_env, worker, log)) == 3
        grant = Grant("topic", DLQ_TOPIC, ("Write",))
        with secured.without("worker", grant):
            wait_until_write(worker_conn, DLQ_TOPIC, allowed=False)
            asyncio.run(_send_poison_then_events(shipper, session, 4))
            # the worker may not commit past the message it cannot dead-letter: it stops
            code = worker.wait(180)
        assert code != 0
        text = log.read_text()
        assert "Traceback" not in text, text[-4000:]
        refused = [line for line in text.splitlines() if f"write topic {DLQ_TOPIC}" in line]
        assert len(refused) == 1, text[-4000:]
        assert "user 'worker' is not authorized to write topic" in refused[0]
        assert refused[0].rstrip().endswith(kafka_acls_command("worker", grant)), refused[0]

        # the ACL is back: a new worker dead-letters the message and ingests what followed
        wait_until_write(worker_conn, DLQ_TOPIC, allowed=True)
        worker = start_worker(worker_env, data, log)
        events = replay_when_ready(session, replay_env, worker, log)
        assert [e["seq"] for e in events] == list(range(4))
        deadline = time.monotonic() + 60
        while POISON not in b"".join(asyncio.run(_dead_letters(secured.connection("admin")))):
            assert time.monotonic() < deadline, "the refused dead letter was never written"
            time.sleep(1)
    finally:
        stop(worker)
    assert "Traceback" not in log.read_text()
