"""`kaizen-stream tail`: the seam between replay and live events, and a clean Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from aiokafka import AIOKafkaProducer

from tests.replay.conftest import (
    ROOT,
    Worker,
    as_messages,
    damage,
    make_events,
    produce,
    replay_until,
)
from workers.codec.event import encode_event
from workers.replay.client import ReplayClient
from workers.settings import EVENTS_TOPIC


class Lines:
    """Reads a process's stdout in a thread, so the test can wait for lines without blocking."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.lines)


def _start_tail(worker: Worker, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers", "tail", *args],
        env=worker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert proc.stderr is not None
    return proc.returncode, proc.stderr.read()


def test_tail_has_no_gap_and_no_duplicate_at_the_seam(worker: Worker, unique: str) -> None:
    sid = f"tail-{unique}"
    produced = make_events(sid, 1500)
    messages = as_messages(produced, 5)

    async def feed(first: int, last: int, pause: float) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=worker.broker.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in messages[first:last]:
                await producer.send_and_wait(EVENTS_TOPIC, value, key=key)
                await asyncio.sleep(pause)
        finally:
            await producer.stop()

    # a history before tail starts, then events keep coming while it replays and after
    asyncio.run(feed(0, 100, 0))
    proc = _start_tail(worker, sid)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        asyncio.run(feed(100, len(messages), 0.01))
        got = lines.wait(len(produced), 90)
    finally:
        code, err = _stop(proc)
    seqs = [json.loads(line)["seq"] for line in got]
    assert seqs == list(range(len(produced))), (len(seqs), err[-2000:])
    assert [json.loads(line) for line in got] == produced
    assert code == 0 and "Traceback" not in err


def test_tail_all_prints_one_line_per_event(worker: Worker, unique: str) -> None:
    sid = f"tailall-{unique}"
    produced = make_events(sid, 20)
    proc = _start_tail(worker, "--all")
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        time.sleep(3)  # the follower positions itself at the end before we produce
        deadline = time.monotonic() + 60
        mine: list[str] = []
        asyncio.run(_produce(worker, produced))
        while len(mine) < 20 and time.monotonic() < deadline:
            mine = [line for line in lines.wait(0, 0) if sid[:11] in line]
            time.sleep(0.1)
    finally:
        code, err = _stop(proc)
    assert len(mine) == 20, err[-2000:]
    assert "claude" in mine[0] and "tool_call" in mine[0]
    assert code == 0 and "Traceback" not in err


async def _produce(worker: Worker, events: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.broker.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in as_messages(events, 4):
            await producer.send_and_wait(EVENTS_TOPIC, value, key=key)
    finally:
        await producer.stop()


def test_tail_needs_a_session_or_all(worker: Worker) -> None:
    result = worker.cli("tail")
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_tail_warns_about_damaged_frames_and_goes_on(worker: Worker, unique: str) -> None:
    """A frame damaged on the worker: tail prints every other event, names the missing seq on
    stderr, and keeps following (a live event after it is printed too)."""
    sid = f"taildmg-{unique}"
    produced = make_events(sid, 21)
    asyncio.run(produce(worker.broker.bootstrap, as_messages(produced[:20], 5)))

    async def ingested() -> None:
        async with ReplayClient(worker.broker.bootstrap) as client:
            await replay_until(client, sid, 20)

    asyncio.run(ingested())
    damage(worker.data_dir, encode_event(produced[7]))
    proc = _start_tail(worker, sid, "--lookback", "0")
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        lines.wait(19, 60)
        asyncio.run(_produce(worker, produced[20:]))
        got = lines.wait(20, 60)
    finally:
        code, err = _stop(proc)
    assert [json.loads(line)["seq"] for line in got] == [s for s in range(21) if s != 7], err
    assert "warning: partial replay" in err and "seqs 7 " in err
    assert code == 0 and "Traceback" not in err
