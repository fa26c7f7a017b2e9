"""A damaged frame in the middle of a segment: replay says partial and names it; then it heals.

Real worker, real broker, real files: a byte of one stored event is flipped on disk, so its
frame fails its CRC. The replay sends every other event and ends `partial` with the missing
seq; the worker re-reads that event from kaizen.events and appends it again, so a later replay
is complete, each seq exactly once. `verify --repair` does the same for a stopped worker.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import delete_topic
from tests.procs import stop
from tests.replay.conftest import (
    ROOT,
    Worker,
    as_messages,
    damage,
    kaizen_env,
    make_events,
    produce,
    replay_until,
    start_worker,
)
from workers.broker.embedded import free_port
from workers.broker.topics import ensure_topics
from workers.codec.event import encode_event
from workers.replay.client import ReplayClient, Replayed, ReplayResult
from workers.settings import EVENTS_TOPIC

WAIT = 90.0


def _sid_events(sid: str) -> list[dict[str, Any]]:
    return make_events(sid, 40)


async def _replay(client: ReplayClient, sid: str) -> tuple[list[Replayed], ReplayResult]:
    return await client.collect(sid)


def _wait_complete(bootstrap: str, sid: str, produced: list[dict[str, Any]]) -> None:
    async def main() -> None:
        async with ReplayClient(bootstrap, timeout=WAIT) as client:
            events, result = await replay_until(client, sid, len(produced), timeout=WAIT)
            assert result.end.status == "ok" and len(events) == len(produced)

    asyncio.run(main())


def test_a_damaged_frame_gives_a_partial_replay_then_heals(worker: Worker, unique: str) -> None:
    sid = f"damage-{unique}"
    produced = _sid_events(sid)
    bootstrap = worker.broker.bootstrap
    asyncio.run(produce(bootstrap, as_messages(produced, 10)))
    _wait_complete(bootstrap, sid, produced)
    seg, where = damage(worker.data_dir, encode_event(produced[15]))

    # The CLI prints every readable event, warns naming the missing seq, exits 4.
    cli = worker.cli("replay", sid, "--timeout", str(WAIT))
    assert cli.returncode == 4, cli.stderr
    assert [json.loads(line)["seq"] for line in cli.stdout.splitlines()] == [
        s for s in range(40) if s != 15
    ]
    assert "partial replay" in cli.stderr and "seqs 15 " in cli.stderr
    assert cli.stderr.count("\n") == 1

    async def main() -> None:
        async with ReplayClient(bootstrap, timeout=WAIT) as client:
            deadline = time.monotonic() + WAIT
            while True:
                events, result = await client.collect(sid)
                assert result.complete  # what was sent arrived once, in order
                if result.end.status == "ok" or time.monotonic() > deadline:
                    break
                # until healed: everything but seq 15, and the marker names it
                assert result.end.status == "partial" and result.end.missing == ((15, 15),)
                assert [e.seq for e in events] == [s for s in range(40) if s != 15]
                await asyncio.sleep(0.5)
            assert result.end.status == "ok", result.end
            assert [e.seq for e in events] == list(range(40))  # each seq exactly once
            assert [e.value for e in events] == [encode_event(e) for e in produced]

    asyncio.run(main())
    assert "healed 1 event(s)" in worker.log.read_text()
    # verify (read only beside the running worker) reports that range healed
    ours = [line for line in worker.cli("verify").stdout.splitlines() if _covers(line, seg, where)]
    assert len(ours) == 1 and ours[0].endswith("(healed from kaizen.events)"), ours


def _covers(line: str, seg: Path, where: int) -> bool:
    """Is `line` verify's `bad range:` line of the range holding byte `where` of `seg`?"""
    m = re.match(r"bad range: (\S+) segment (\d+) bytes \[(\d+), (\d+)\)", line)
    return bool(
        m
        and m.group(1) == seg.parent.name
        and int(m.group(2)) == int(seg.stem)
        and int(m.group(3)) <= where < int(m.group(4))
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def test_verify_repair_heals_from_the_source_topic(fresh_broker: Broker, tmp_path: Path) -> None:
    """A stopped worker's hot log with a damaged frame: verify reports it; --repair with the
    broker down says so in one line and heals nothing; with the broker up it re-reads the
    event from kaizen.events; the restarted worker then replays every seq exactly once."""
    sid = f"repair-{uuid.uuid4().hex[:8]}"
    produced = _sid_events(sid)
    bootstrap = fresh_broker.bootstrap
    group = f"repair-{uuid.uuid4().hex[:6]}"
    data_dir = tmp_path / "data"
    env = kaizen_env(fresh_broker, data_dir)
    asyncio.run(produce(bootstrap, as_messages(produced, 10)))
    first = start_worker(fresh_broker, data_dir, group, tmp_path / "worker1.log")
    try:
        _wait_complete(bootstrap, sid, produced)
    finally:
        stop(first)
    damage(data_dir, encode_event(produced[15]))

    found = _cli(env, "verify")
    assert found.returncode == 1 and "bad frame skipped by resync (present)" in found.stdout

    down = _cli(env, "verify", "--repair", "--broker", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1
    assert "not healed" in down.stdout and "Traceback" not in down.stdout + down.stderr

    healed = _cli(env, "verify", "--repair")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "healed 1 event(s)" in healed.stdout
    again = _cli(env, "verify")
    assert again.returncode == 0 and "(healed from kaizen.events)" in again.stdout

    second = start_worker(fresh_broker, data_dir, group, tmp_path / "worker2.log")
    try:

        async def main() -> None:
            async with ReplayClient(bootstrap, timeout=WAIT) as client:
                events, result = await replay_until(client, sid, 40, timeout=WAIT)
                assert result.end.status == "ok" and result.complete
                assert [e.seq for e in events] == list(range(40))
                assert [e.value for e in events] == [encode_event(e) for e in produced]

        asyncio.run(main())
    finally:
        stop(second)


def test_verify_repair_heals_nothing_from_a_topic_made_again(
    fresh_broker: Broker, tmp_path: Path
) -> None:
    """The topic was deleted and made again after the worker stopped: its offsets hold other
    events now, so --repair heals nothing from it and says why (it used to read the new
    topic's events at the old offsets and mark the damage healed)."""
    sid = f"again-{uuid.uuid4().hex[:8]}"
    produced = _sid_events(sid)
    bootstrap = fresh_broker.bootstrap
    data_dir = tmp_path / "data"
    env = kaizen_env(fresh_broker, data_dir)
    asyncio.run(produce(bootstrap, as_messages(produced, 10)))
    worker = start_worker(fresh_broker, data_dir, f"again-{sid}", tmp_path / "worker.log")
    try:
        _wait_complete(bootstrap, sid, produced)
    finally:
        stop(worker)
    damage(data_dir, encode_event(produced[15]))

    asyncio.run(delete_topic(bootstrap, EVENTS_TOPIC))
    asyncio.run(ensure_topics(bootstrap, TEST_PARTITIONS))
    # another session's events at the same offsets of the same partition (same key)
    other = as_messages(make_events(f"other-{sid}", 40), 10)
    asyncio.run(produce(bootstrap, [(sid.encode(), value) for _, value in other]))

    res = _cli(env, "verify", "--repair")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "the topic id changed" in res.stdout and "not healed" in res.stdout, res.stdout
    assert "healed 1 event(s)" not in res.stdout
    again = _cli(env, "verify")
    assert again.returncode == 1 and "healed from" not in again.stdout, again.stdout
