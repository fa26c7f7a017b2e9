"""The whole path over the real broker: produce → worker → hot log → replay.

Everything runs as a user runs it: the worker and `replay` are separate
processes of `kaizen-stream`, talking to the embedded broker over TCP.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.procs import stop
from workers.broker.embedded import free_port, port_in_use
from workers.codec import batch
from workers.codec.event import complete_event, encode_event
from workers.settings import EVENTS_TOPIC


def kaizen_env(broker: Broker, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAIZEN_BROKER": broker.bootstrap,
        "KAIZEN_DATA_DIR": str(data_dir),
        "KAIZEN_PARTITIONS": str(TEST_PARTITIONS),
    }


def make_sessions(
    prefix: str, sessions: int, rng: random.Random
) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    kinds = ["tool_call", "tool_result", "message", "cost", "hook"]
    for s in range(sessions):
        sid = f"{prefix}-{s}"
        out[sid] = [
            complete_event(
                {
                    "session_id": sid,
                    "seq": seq,
                    "ts_ms": 1_760_000_000_000 + seq * 1000,
                    "kind": rng.choice(kinds),
                    "agent": rng.choice(["claude", "cursor", "codex"]),
                    "tool": rng.choice([None, "Bash", "Edit", "Read"]),
                    "tokens_in": rng.randrange(10_000),
                    "payload": json.dumps({"n": seq, "text": "x" * rng.randrange(200)}),
                }
            )
            for seq in range(rng.randrange(1, 120))
        ]
    return out


async def produce(bootstrap: str, messages: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(EVENTS_TOPIC, value, key=key.encode()) for key, value in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def as_messages(
    sessions: dict[str, list[dict[str, object]]], rng: random.Random
) -> list[tuple[str, bytes]]:
    """Per session, in seq order: some events as plain single-object messages, most in batches."""
    messages = []
    for sid, events in sessions.items():
        i = 0
        while i < len(events):
            n = rng.choice([1, 1, 5, 32, 128])
            chunk = [encode_event(e) for e in events[i : i + n]]
            messages.append((sid, chunk[0] if n == 1 else batch.join(chunk)))
            i += n
    return messages


def replay(
    broker: Broker, data_dir: Path, session_id: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", "replay", session_id, "--format", "jsonl", *flags],
        env=kaizen_env(broker, data_dir),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def replay_until_complete(
    broker: Broker, data_dir: Path, session_id: str, expected: int, deadline: float
) -> list[dict[str, object]]:
    while True:
        result = replay(broker, data_dir, session_id)
        events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        if result.returncode == 0 and len(events) >= expected:
            return events
        if time.monotonic() > deadline:
            pytest.fail(
                f"{session_id}: {len(events)} of {expected} events; {result.stderr.strip()}"
            )
        time.sleep(0.5)


def test_every_session_replays_exactly_as_produced(
    broker: Broker, worker: subprocess.Popen[bytes], tmp_path: Path, unique: str
) -> None:
    rng = random.Random(unique)
    sessions = make_sessions(f"e2e-{unique}", 40, rng)
    messages = as_messages(sessions, rng)
    asyncio.run(produce(broker.bootstrap, messages))
    deadline = time.monotonic() + 180
    for sid, produced in sessions.items():
        replayed = replay_until_complete(broker, tmp_path / "data", sid, len(produced), deadline)
        assert replayed == produced, sid
    assert worker.poll() is None
    # a reader that goes away early (`| head -1`) is not a broker failure: no message
    longest = max(sessions, key=lambda sid: len(sessions[sid]))
    piped = subprocess.run(
        f"{sys.executable} -m workers replay {longest} --format pretty | head -1",
        shell=True,
        env=kaizen_env(broker, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.stdout.count("\n") == 1 and piped.stderr == "", piped.stderr


def test_a_new_group_answers_its_first_replays_in_full(
    fresh_broker: Broker, tmp_path: Path, unique: str
) -> None:
    """History already in the topic, then a worker of a group that has never committed:
    its partitions catch up to the end of the topic before any replay is answered, so the
    very first answer for every session is complete (no retries here)."""
    rng = random.Random(unique)
    sessions = make_sessions(f"new-group-{unique}", 12, rng)
    asyncio.run(produce(fresh_broker.bootstrap, as_messages(sessions, rng)))
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "worker", "--web-port", str(free_port())],
        env=kaizen_env(fresh_broker, tmp_path / "data"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for sid, produced in sessions.items():
            result = replay(fresh_broker, tmp_path / "data", sid, "--timeout", "120")
            assert result.returncode == 0, result.stderr
            replayed = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
            assert replayed == produced, sid
    finally:
        stop(proc)
        log.close()


def test_unknown_session_exits_1_with_one_line(
    broker: Broker, worker: subprocess.Popen[bytes], tmp_path: Path, unique: str
) -> None:
    # A known session first, so that the worker is surely serving.
    sessions = make_sessions(f"known-{unique}", 1, random.Random(1))
    asyncio.run(produce(broker.bootstrap, as_messages(sessions, random.Random(1))))
    ((sid, events),) = sessions.items()
    replay_until_complete(broker, tmp_path / "data", sid, len(events), time.monotonic() + 180)
    result = replay(broker, tmp_path / "data", f"no-such-session-{unique}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        out = subprocess.run(
            ["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False
        ).stdout.split()
        kids = [int(k) for k in out]
        found.extend(kids)
        todo.extend(kids)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_runs_everything_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAIZEN_BROKER": f"127.0.0.1:{port}",
        "KAIZEN_DATA_DIR": str(tmp_path / "data"),
        "KAIZEN_PARTITIONS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "up", "--web-port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        output = "".join(lines)
        assert "kaizen-stream replay" in output and "hooks install" in output, output
        assert port_in_use("127.0.0.1", port)
        children = descendants(proc.pid)
        assert len(children) >= 2, children  # the broker and the worker at least
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, "".join(lines)
    time.sleep(0.5)
    assert not port_in_use("127.0.0.1", port)
    assert [pid for pid in children if alive(pid)] == []
