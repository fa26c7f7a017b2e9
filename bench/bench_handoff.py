"""Handoff: a worker with an empty data dir takes over a partition holding N events.

One partition holds N events (128 per Kafka message, many sessions) whose
offsets the group has already committed, as if a previous owner had ingested
them and died. A `kaizen-stream worker` with an empty data dir starts; we time
from its start to a complete replay of a session on that partition
(`kaizen-stream replay`, the answer arrives only once the partition has caught
up), and split out the join wait and the catch-up from the worker's log.

Beside it, in the same run: a Faust app with a Table whose changelog holds the
same N events (one changelog record per event, as a table keeps them) starts
with an empty data dir; we time from its start until the table holds all N
(memory store: the fastest Faust restore there is).

Goal: handoff <= 15 s for 1M events, >= 10x faster than the Faust restore.

    .venv/bin/python bench/bench_handoff.py            # 1M events
    .venv/bin/python bench/bench_handoff.py --quick    # 100k events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from bench_ingest import commit_offsets, event_factory, produce  # noqa: E402
from worker_process import running_worker, worker_env  # noqa: E402

from workers.broker.embedded import EmbeddedBroker, free_port  # noqa: E402
from workers.broker.topics import ensure_topics  # noqa: E402

SESSION_TIMEOUT = 6.0
FAUST_APP = "bench-restore"
CHANGELOG = f"{FAUST_APP}-events-changelog"


async def produce_events(bootstrap: str, total: int, sessions: int) -> tuple[int, str, int]:
    """N events into partition 0 of kaizen.events; returns (messages, a session, its count)."""
    messages = await produce(bootstrap, total, sessions, prefix="hand", partition=0)
    return messages, f"hand-{sessions - 1:05d}", total // sessions


async def produce_changelog(bootstrap: str, total: int, sessions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name, num_partitions=1, replication_factor=1)
                for name in (CHANGELOG, f"{FAUST_APP}-source")
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    per_session = total // sessions
    makers = [event_factory(f"hand-{s:05d}") for s in range(sessions)]
    try:
        futures = []
        for q in range(per_session):
            for s, make in enumerate(makers):
                key = f"hand-{s:05d}:{q}".encode()
                futures.append(await producer.send(CHANGELOG, make(q), key=key, partition=0))
            if len(futures) > 20000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


FAUST_RESTORE = f"""
import os, sys, time, faust
t0 = float(sys.argv[1]); n = int(sys.argv[2]); broker = sys.argv[3]; out = sys.argv[4]
app = faust.App("{FAUST_APP}", broker="kafka://" + broker, store="memory://", web_enabled=False,
    topic_partitions=1, broker_session_timeout={SESSION_TIMEOUT}, broker_heartbeat_interval=1,
    key_serializer="raw", value_serializer="raw", datadir=sys.argv[5])
table = app.Table("events", partitions=1, key_type=bytes, value_type=bytes)
source = app.topic("{FAUST_APP}-source", partitions=1, key_type=bytes, value_type=bytes)

@app.agent(source)
async def owner(stream):  # makes partition 0 of the table active on this worker
    async for _ in stream:
        pass

# timers start once table recovery is complete: the first tick is the end of the restore
# (tansu's end offsets lie, so Faust stops restoring at the start of the last batch + 1;
# the table then holds fewer than n records, and we count what it restored)
@app.timer(0.02)
async def check():
    with open(out, "w") as f:
        f.write(f"{{time.time() - t0}} {{len(table)}}")
    os._exit(0)

faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
"""


def faust_restore(
    bootstrap: str, total: int, workdir: Path, timeout: float
) -> tuple[float, int] | None:
    script = workdir / "restore_app.py"
    script.write_text(FAUST_RESTORE)
    out = workdir / "restore_elapsed"
    t0 = time.time()
    args = [str(t0), str(total), bootstrap, str(out), str(workdir / "faust-data")]
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=(workdir / "restore.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    if not out.exists():
        return None
    elapsed, restored = out.read_text().split()
    return float(elapsed), int(restored)


def _log_time(line: str) -> float:
    stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]", line)
    assert stamp
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def kaizen_handoff(
    bootstrap: str, workdir: Path, session: str, expected: int
) -> tuple[float, float, float]:
    """(start → complete replay, start → catch-up begins, catch-up seconds)."""
    env = worker_env(bootstrap, workdir / "kaizen-data", 1)
    log_path = workdir / "worker.log"
    t0 = time.time()
    # default log level: the catch-up lines it logs time the phases below
    with running_worker(
        env, log_path, web_port=free_port(), session_timeout=SESSION_TIMEOUT, loglevel=None
    ) as worker:
        while True:
            r = subprocess.run(
                [sys.executable, "-m", "workers", "replay", session, "--timeout", "20"],
                env=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
            if r.returncode == 0 and len(lines) == expected:
                if [e["seq"] for e in lines] != list(range(expected)):
                    raise RuntimeError("replay out of order or with gaps")
                total = time.time() - t0
                break
            if time.time() - t0 > 300 or worker.poll() is not None:
                raise RuntimeError(f"no complete replay: {r.stderr[-2000:]}; see {log_path}")
    text = log_path.read_text()
    begin = end = None
    for line in text.splitlines():
        if "catching up offsets" in line and begin is None:
            begin = _log_time(line)
        if "caught up" in line and "messages in" in line:
            end = _log_time(line)
    if begin is None or end is None:
        raise RuntimeError(f"no catch-up in {log_path}")
    return total, begin - t0, end - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    parser.add_argument("--events", type=int)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--faust-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    total = args.events or (100_000 if args.quick else 1_000_000)
    total -= total % args.sessions
    workdir = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    broker = EmbeddedBroker(port=free_port(), log=workdir / "tansu.log").start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap, 1))
        t = time.perf_counter()
        messages, session, per_session = asyncio.run(
            produce_events(broker.bootstrap, total, args.sessions)
        )
        asyncio.run(commit_offsets(broker.bootstrap, {0: messages}))
        print(
            f"{total:,} events in {messages:,} messages on one partition "
            f"({time.perf_counter() - t:.1f}s)",
            flush=True,
        )
        handoff, join, catch_up = kaizen_handoff(broker.bootstrap, workdir, session, per_session)
        t = time.perf_counter()
        asyncio.run(produce_changelog(broker.bootstrap, total, args.sessions))
        print(f"changelog of {total:,} records ({time.perf_counter() - t:.1f}s)", flush=True)
        restore = faust_restore(broker.bootstrap, total, workdir, args.faust_timeout)
    finally:
        broker.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{'path':52} {'seconds':>8} {'events/s':>10}")
    print(f"{'kaizen worker: start -> complete replay':52} {handoff:8.2f} {total / handoff:10,.0f}")
    print(f"{'  of which group join (start -> catch-up begins)':52} {join:8.2f}")
    print(
        f"{'  of which catch-up (read, check, append, index)':52} {catch_up:8.2f} "
        f"{total / catch_up:10,.0f}"
    )
    if restore is None:
        print(f"{'Faust table changelog restore: did not finish in':52} {args.faust_timeout:8.0f}")
        restore_s = args.faust_timeout
    else:
        secs, restored = restore
        rate = restored / secs
        print(f"{'Faust table changelog restore (memory store)':52} {secs:8.2f} {rate:10,.0f}")
        print(f"{'  records restored (tansu end offsets stop it early)':52} {restored:>8,}")
        restore_s = total / rate
        print(f"{'  at that rate, all events would take':52} {restore_s:8.2f}")
    print()
    print(
        f"handoff: {handoff:.2f}s (goal <= 15 s); Faust restore / handoff: "
        f"{restore_s / handoff:.1f}x (goal >= 10x)"
    )


if __name__ == "__main__":
    main()
