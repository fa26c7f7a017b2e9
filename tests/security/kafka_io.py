"""Small helpers for the security tests: run commands, fill a spool, read the events topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.hooks.util import hook_env, run_hook
from workers.broker.embedded import free_port
from workers.codec.batch import is_batch, split
from workers.codec.errors import DecodeError
from workers.codec.event import decode_event
from workers.hooks.samples import sample_payloads
from workers.kafka import clients, operations
from workers.kafka.config import KafkaConnection
from workers.settings import EVENTS_TOPIC

ROOT = Path(__file__).resolve().parents[2]


def child_env(home: Path, **kaizen: str) -> dict[str, str]:
    """A child's environment: none of the caller's KAIZEN_* variables, HOME in `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env["HOME"] = str(home)
    env.update(kaizen)
    return env


def kaizen(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def fill_spool(spool: Path, session: str, count: int = 5) -> int:
    """Up to `count` sample hook calls, as one session, into `spool` (no shipper started);
    the number of events spooled."""
    env = hook_env(spool, KAIZEN_HOOK_NO_SHIP="1")
    payloads = sample_payloads("claude")[:count]
    for payload in payloads:
        payload["session_id"] = session
        assert run_hook("claude", payload, env).returncode == 0
    return len(payloads)


@contextlib.asynccontextmanager
async def reading(
    conn: KafkaConnection, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer (no group) of every partition of `topic`, from its beginning."""
    consumer = clients.new_consumer(conn, role="test", group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await clients.topic_partitions(consumer._client, topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def _read_session(
    conn: KafkaConnection, session: str, want: int, timeout: float
) -> list[dict[str, Any]]:
    async with reading(conn, EVENTS_TOPIC) as (consumer, _):
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < want:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    assert record.value is not None
                    items = split(record.value) if is_batch(record.value) else [record.value]
                    for item in items:
                        try:
                            event = decode_event(item)
                        except DecodeError:
                            continue  # another test's junk: the worker dead-letters it
                        if event["session_id"] == session:
                            found.append(event)
        return found


def read_session(
    conn: KafkaConnection, session: str, want: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """The events of `session` in kaizen.events (stops once `want` are seen, or at timeout)."""
    return asyncio.run(_read_session(conn, session, want, timeout))


async def _write_allowed(conn: KafkaConnection, topic: str) -> bool | None:
    consumer = clients.new_consumer(conn, role="test", group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        found = await operations.topic_operations(consumer._client, [topic])
        return operations.allows(found[topic], operations.WRITE)
    finally:
        await consumer.stop()


def wait_until_write(conn: KafkaConnection, topic: str, *, allowed: bool) -> None:
    """Until the broker applies an ACL change (asynchronously, after kafka-acls returns):
    `conn`'s principal may (or may not) write `topic`."""
    deadline = time.monotonic() + 60
    while asyncio.run(_write_allowed(conn, topic)) is not allowed:
        assert time.monotonic() < deadline, f"Write on {topic} never became {allowed}"
        time.sleep(0.2)


def start_worker(env: dict[str, str], data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """`kaizen-stream worker` in the background (web server on loopback), output into `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable, "-m", "workers", "worker",
                "--data-dir", str(data_dir),
                "--web-port", str(free_port()), "--web-bind", "127.0.0.1",
                "--session-timeout", "6",
            ],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip


def replay_when_ready(
    session: str, env: dict[str, str], worker: subprocess.Popen[bytes], log: Path
) -> list[dict[str, Any]]:
    """`kaizen-stream replay session` once the worker answers it (it may still be joining
    its group); the events replayed."""
    deadline = time.monotonic() + 120
    while True:
        replayed = kaizen("replay", session, "--timeout", "20", env=env)
        if replayed.returncode == 0 or time.monotonic() > deadline or worker.poll() is not None:
            break
        time.sleep(1)
    assert replayed.returncode == 0, (replayed.stderr, log.read_text()[-3000:])
    return jsonl(replayed.stdout)


def one_line(stderr: str) -> str:
    """The single line a command printed on failure (asserting there is exactly one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def jsonl(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
