"""Small helpers for the security tests: run commands, fill a spool, read the events topic."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from tests.hooks.util import hook_env, run_hook
from workers.codec.batch import is_batch, split
from workers.codec.errors import DecodeError
from workers.codec.event import decode_event
from workers.hooks.samples import sample_payloads
from workers.kafka import clients
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


async def _read_session(
    conn: KafkaConnection, session: str, want: int, timeout: float
) -> list[dict[str, Any]]:
    consumer = clients.new_consumer(conn, role="test", group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await clients.topic_partitions(consumer._client, EVENTS_TOPIC) or set()
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
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
    finally:
        await consumer.stop()


def read_session(
    conn: KafkaConnection, session: str, want: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """The events of `session` in kaizen.events (stops once `want` are seen, or at timeout)."""
    return asyncio.run(_read_session(conn, session, want, timeout))


def one_line(stderr: str) -> str:
    """The single line a command printed on failure (asserting there is exactly one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def jsonl(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
