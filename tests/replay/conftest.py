"""Replay fixtures: one real worker (subprocess, own group id) on the shared broker, and helpers.

The worker lives for the whole tests/replay package (starting one costs a
group join); every test uses its own session ids (`unique`), so tests do not
see each other's data. The worker has `KAIZEN_API_TOKEN` set, for the HTTP tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.procs import stop
from workers.broker.embedded import free_port
from workers.codec import batch
from workers.codec.event import complete_event, encode_event
from workers.hotlog.segment import HEADER_SIZE
from workers.replay.client import ReplayClient, Replayed, ReplayResult
from workers.settings import EVENTS_TOPIC

API_TOKEN = "test-token-" + uuid.uuid4().hex[:8]
ROOT = Path(__file__).resolve().parents[2]
TARGET_PREFIX = "kaizen.replay.test."  # KAIZEN_REPLAY_TOPIC_PREFIX of the test workers


@dataclass
class Worker:
    broker: Broker
    data_dir: Path
    web_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return kaizen_env(self.broker, self.data_dir)

    def cli(
        self, *args: str, timeout: float = 120, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        options: dict[str, Any] = {"capture_output": True} | kwargs
        if not options["capture_output"]:
            del options["capture_output"]
        return subprocess.run(
            [sys.executable, "-m", "workers", *args],
            env=self.env,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
            **options,
        )


def kaizen_env(broker: Broker, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAIZEN_BROKER": broker.bootstrap,
        "KAIZEN_DATA_DIR": str(data_dir),
        "KAIZEN_PARTITIONS": str(TEST_PARTITIONS),
        "KAIZEN_API_TOKEN": API_TOKEN,
        "KAIZEN_REPLAY_TOPIC_PREFIX": TARGET_PREFIX,
    }


def start_worker(broker: Broker, data_dir: Path, group: str, log: Path) -> subprocess.Popen[bytes]:
    """A worker process of its own (group, data dir, log file), not waited for."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.replay.worker_main", group, str(free_port())],
            env=kaizen_env(broker, data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


@pytest.fixture(scope="package")
def worker(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("replay-worker")
    log = tmp / "worker.log"
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.replay.worker_main",
                f"kaizen-replay-tests-{uuid.uuid4().hex[:6]}",
                str(port),
            ],
            env=kaizen_env(broker, tmp / "data"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    w = Worker(broker, tmp / "data", port, proc, log)
    try:
        asyncio.run(_wait_serving(broker.bootstrap, proc, log))
        yield w
    finally:
        stop(proc)


async def _wait_serving(bootstrap: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the worker answers a replay of every partition (not_found is an answer)."""
    deadline = time.monotonic() + 90
    async with ReplayClient(bootstrap, timeout=3) as client:
        probes = [f"probe-{i}-{uuid.uuid4().hex[:6]}" for i in range(16)]
        for probe in probes:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {log.read_text()[-3000:]}")
                try:
                    await client.collect(probe)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"worker not serving: {log.read_text()[-3000:]}"
                        ) from None


def make_events(
    session: str, count: int, start: int = 0, t0: int = 1_760_000_000_000
) -> list[dict[str, Any]]:
    kinds = ["tool_call", "tool_result", "message", "cost", "hook"]
    return [
        complete_event(
            {
                "session_id": session,
                "seq": seq,
                "ts_ms": t0 + seq * 1000,
                "kind": kinds[seq % len(kinds)],
                "agent": "claude",
                "model": "opus" if seq % 2 else None,
                "tool": ["Bash", None, "Edit"][seq % 3],
                "tokens_in": seq * 3,
                "payload": f'{{"n": {seq}}}',
            }
        )
        for seq in range(start, start + count)
    ]


def as_messages(
    events: Sequence[dict[str, Any]], per_message: int = 50
) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(0, len(events), per_message):
        chunk = [encode_event(e) for e in events[i : i + per_message]]
        key = str(events[i]["session_id"]).encode()
        out.append((key, chunk[0] if len(chunk) == 1 else batch.join(chunk)))
    return out


async def produce(bootstrap: str, messages: Sequence[tuple[bytes, bytes]]) -> dict[bytes, int]:
    """Produce to kaizen.events; returns the partition each key landed on (the broker's word)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(EVENTS_TOPIC, value, key=key) for key, value in messages]
        landed = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {key: meta.partition for (key, _), meta in zip(messages, landed, strict=True)}


async def replay_until(
    client: ReplayClient, session: str, expected: int, timeout: float = 60, **options: Any
) -> tuple[list[Replayed], ReplayResult]:
    """Replay until `expected` events come back (ingest is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        events, result = await client.collect(session, **options)
        if len(events) >= expected or time.monotonic() > deadline:
            return events, result
        await asyncio.sleep(0.2)


def damage(data_dir: Path, payload: bytes) -> tuple[Path, int]:
    """Flip one byte inside the stored copy of `payload`; (segment file, where) of the damage."""
    found = []
    for seg in sorted((data_dir / "hotlog").glob("kaizen.events-*/*.seg")):
        data = seg.read_bytes()
        at = data.find(payload)
        if at >= 0:
            assert data.find(payload, at + 1) < 0, "the event is stored twice"
            found.append((seg, at, len(data)))
    assert len(found) == 1, found
    seg, at, size = found[0]
    where = at + len(payload) // 2
    fd = os.open(seg, os.O_RDWR)
    try:
        (byte,) = os.pread(fd, 1, where)
        os.pwrite(fd, bytes([byte ^ 0xFF]), where)
    finally:
        os.close(fd)
    # in the middle of the segment: good frames before and after it
    assert at > HEADER_SIZE and where + len(payload) < size
    return seg, where
