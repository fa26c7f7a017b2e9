"""Fleet: hundreds of developer machines shipping hook events to a three-broker cluster.

    .venv/bin/python bench/bench_fleet.py            # 200 machines, 120 s measured, 2 workers
    .venv/bin/python bench/bench_fleet.py --quick    # 200 machines, 30 s measured, 1 worker

Apache Kafka, three brokers on loopback (workers.broker.apache.KafkaCluster),
every topic at replication factor 3 and min.insync.replicas 2, created by the
project's own `topics create` code. `kaizen-stream worker` processes ingest.
The machines (bench/fleet_machines.py: each its own spool, real shipper and
agent sessions; `--procs` processes share them) fire hooks through the real
hook code at a human pace. Measured, per hook call:

  hook -> on kaizen.events    until the shipper's batch is on the topic, seen by a
                              group-less follower of kaizen.events (`tail`'s live path)
  on topic -> replayed        until a replay request (the real replay path:
                              ReplayClient -> kaizen.replay.requests -> worker ->
                              kaizen.replay) returns it; a session is polled every
                              POLL_S once one of its awaited events is on the topic
  hook -> replayed            freshness; goal p99 <= 2 s with default settings

Freshness is measured on the sessions of every `--watch`-th machine (default
every 10th): polling every session of 200 machines would be a replay load no
real fleet puts on its workers (a few people tail a few sessions), and on 2
shared cores it would slow the very ingest it measures. Every machine's events
take the same path, and every one of them counts in the other rows and in the
loss count.

Beside it, in the same run and on the same cluster, the floor: a plain aiokafka
producer (acks=all) sending to a topic of its own (RF 3, min.insync 2) and a
plain aiokafka consumer, send call -> record received.

Losses are counted exactly: after the run every session is replayed whole, and
each hook call's (session, seq) must come back once; no other seq may come back.
Exit status 0 only with no loss and freshness p99 within the goal. What bounds
freshness, and the figures measured: docs/OPERATIONS.md ("Freshness"), README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from bench_hook import pct  # noqa: E402
from brokers import load_average  # noqa: E402
from fleet_machines import mean_gap  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from worker_process import running_worker, worker_env  # noqa: E402

from workers.broker.apache import KafkaCluster, missing_requirements  # noqa: E402
from workers.broker.embedded import free_port  # noqa: E402
from workers.broker.topics import create_topics  # noqa: E402
from workers.hooks.samples import sample_payloads  # noqa: E402
from workers.ingest.assignment import partition_for_key  # noqa: E402
from workers.replay.client import (  # noqa: E402
    ReplayClient,
    Replayed,
    ReplayResult,
    ReplyTimeout,
    live_events,
    open_follower,
)
from workers.replay.formats import STATUS_ERROR, STATUS_NOT_FOUND  # noqa: E402
from workers.settings import EVENTS_TOPIC, Settings  # noqa: E402

GOAL_P99_S = 2.0
POLL_S = 0.05  # between two replays of one session while an event of it is awaited
MAX_INFLIGHT = 32  # replay requests in flight at once
VERIFY_INFLIGHT = 8
VERIFY_ATTEMPTS = 5
FLOOR_TOPIC = "bench.fleet.floor"
FLOOR_EVERY_S = 0.05
DRAIN_TIMEOUT_S = 120.0
PARTITIONS = Settings().partitions


@dataclass
class Call:
    """One hook call: when it was made, and when its event was seen where."""

    t_call: float
    t_topic: float | None = None
    t_replayed: float | None = None
    measured: bool = True  # False: in the warm-up window


@dataclass
class Fleet:
    """What the machines reported and what the follower and the pollers saw."""

    calls: dict[tuple[str, int], Call] = field(default_factory=dict)
    awaited: dict[str, set[int]] = field(default_factory=dict)  # on topic, not replayed
    pollers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    full_spool: int = 0
    hooks_done: int = 0
    drained: int = 0
    shipped: int = 0
    replays: list[float] = field(default_factory=list)  # request -> end marker, seconds
    measure_from: float = 0.0
    #: per machines process: shipper round p50, p99; event loop lag p50, p99 (seconds)
    processes: list[tuple[float, ...]] = field(default_factory=list)
    watch: int = 10  # poll the sessions of every watch-th machine

    def watched(self, session: str) -> bool:
        return int(session.split("-")[1][1:]) % self.watch == 0


async def read_machines(
    proc: asyncio.subprocess.Process, fleet: Fleet, wake: asyncio.Event
) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        kind, *rest = line.decode().split()
        if kind == "H":
            session, seq, t_ns = rest
            if seq == "-":
                fleet.full_spool += 1
                continue
            t_call = int(t_ns) / 1e9
            measured = t_call >= fleet.measure_from
            call = fleet.calls.get((session, int(seq)))
            if call is None:
                fleet.calls[(session, int(seq))] = Call(t_call, measured=measured)
            else:  # the follower saw it first (pipe lag)
                call.t_call, call.measured = t_call, measured
        elif kind == "D":
            fleet.hooks_done += 1
        elif kind == "S":
            fleet.processes.append(tuple(float(x) for x in rest))
        elif kind == "E":
            fleet.drained += 1
            fleet.shipped += int(rest[0])
        wake.set()
    await proc.wait()
    wake.set()


async def follow_topic(bootstrap: str, fleet: Fleet, client: ReplayClient) -> None:
    """`tail`'s live path: note when each awaited event is on kaizen.events, start its poller."""
    follower = await open_follower(bootstrap, EVENTS_TOPIC)
    sem = asyncio.Semaphore(MAX_INFLIGHT)
    try:
        while True:
            batch = await follower.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for event, _ in live_events(records, None):
                    key = (str(event["session_id"]), int(event["seq"]))
                    call = fleet.calls.get(key)
                    if call is None:
                        # on the topic before its H line was read (pipe lag)
                        call = fleet.calls[key] = Call(now)
                    if call.t_topic is None:
                        call.t_topic = now
                        if not fleet.watched(key[0]):
                            continue
                        fleet.awaited.setdefault(key[0], set()).add(key[1])
                        task = fleet.pollers.get(key[0])
                        if task is None or task.done():
                            fleet.pollers[key[0]] = asyncio.ensure_future(
                                poll(client, key[0], fleet, sem)
                            )
    finally:
        await follower.stop()


async def poll(client: ReplayClient, session: str, fleet: Fleet, sem: asyncio.Semaphore) -> None:
    """Replay `session` from its lowest awaited seq until every awaited event came back."""
    awaited = fleet.awaited[session]
    while awaited:
        async with sem:
            t0 = time.time()
            try:
                async for item in client.replay(client.request(session, from_seq=min(awaited))):
                    if isinstance(item, Replayed) and item.seq in awaited:
                        awaited.discard(item.seq)
                        fleet.calls[(session, item.seq)].t_replayed = time.time()
                    elif isinstance(item, ReplayResult):
                        fleet.replays.append(time.time() - t0)
            except ReplyTimeout:
                continue
        if awaited:
            await asyncio.sleep(POLL_S)


async def floor(bootstrap: str, stop: asyncio.Event) -> list[float]:
    """Plain aiokafka producer -> consumer on FLOOR_TOPIC: send call to receipt, seconds."""
    tp = TopicPartition(FLOOR_TOPIC, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)
    sent: dict[bytes, float] = {}
    got: list[float] = []

    async def receive() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                got.extend(now - sent.pop(r.value) for r in records if r.value in sent)

    reader = asyncio.ensure_future(receive())
    try:
        n = 0
        while not stop.is_set():
            value = str(n).encode()
            sent[value] = time.time()
            await producer.send(FLOOR_TOPIC, value)
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLOOR_EVERY_S)
        deadline = time.monotonic() + 10
        while sent and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await consumer.stop()
    return got


async def make_topics(bootstrap: str, partitions: int) -> None:
    settings = Settings(
        broker=bootstrap, partitions=partitions, replication_factor=3, min_insync_replicas=2
    )
    _, problems = await create_topics(settings)
    if problems:
        raise SystemExit(f"topics: {problems}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(FLOOR_TOPIC, 1, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()


def probe_sessions(partitions: int) -> list[str]:
    """One session id routed to each partition."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        name = f"fleet-probe-{n}"
        found.setdefault(partition_for_key(name.encode(), partitions), name)
        n += 1
    return [found[p] for p in range(partitions)]


async def wait_ready(bootstrap: str, partitions: int, timeout: float = 180.0) -> None:
    """Until a replay of one session per partition is answered (every partition is owned)."""
    deadline = time.monotonic() + timeout
    async with ReplayClient(bootstrap, timeout=10) as client:
        for session in probe_sessions(partitions):
            while True:
                try:
                    _, result = await client.collect(session)
                    if result.end.status == STATUS_NOT_FOUND:
                        break
                except ReplyTimeout:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not answer replays")


async def verify(bootstrap: str, fleet: Fleet) -> tuple[int, int, int, int]:
    """Replay every session whole: (hook events replayed once, lost, duplicated, unexpected)."""
    expected: dict[str, set[int]] = {}
    for session, seq in fleet.calls:
        expected.setdefault(session, set()).add(seq)
    once = lost = dup = extra = 0
    sem = asyncio.Semaphore(VERIFY_INFLIGHT)
    async with ReplayClient(bootstrap, timeout=30) as client:

        async def one(session: str, want: set[int]) -> None:
            nonlocal once, lost, dup, extra
            for attempt in range(VERIFY_ATTEMPTS):
                async with sem:
                    with contextlib.suppress(ReplyTimeout):
                        events, result = await client.collect(session)
                        if result.complete and result.end.status != STATUS_ERROR:
                            break
                # a worker starved of CPU may time out producing a reply: ask again
                await asyncio.sleep(1 + attempt)
            else:
                raise SystemExit(f"no complete replay of {session} in {VERIFY_ATTEMPTS} attempts")
            seqs = [e.seq for e in events]
            once += len(want & set(seqs))
            lost += len(want - set(seqs))
            dup += len(seqs) - len(set(seqs))
            extra += len(set(seqs) - want)

        await asyncio.gather(*(one(s, w) for s, w in expected.items()))
    return once, lost, dup, extra


@contextmanager
def workers(bootstrap: str, tmp: Path, count: int, partitions: int) -> Iterator[None]:
    with ExitStack() as stack:
        for i in range(count):
            env = worker_env(
                bootstrap, tmp / f"worker{i}", partitions, KAIZEN_WORKER_ID=f"fleet-{i}"
            )
            stack.enter_context(running_worker(env, tmp / f"worker{i}.log", web_port=free_port()))
        yield


async def run_fleet(
    args: argparse.Namespace, bootstrap: str, tmp: Path
) -> tuple[Fleet, list[float], tuple[int, int, int, int], float]:
    fleet = Fleet(watch=args.watch)
    start_at = time.time() + 5  # the machine processes import and start their shippers
    fleet.measure_from = start_at + args.warmup
    wake = asyncio.Event()
    procs = []
    per = -(-args.machines // args.procs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    for first in range(0, args.machines, per):
        count = min(per, args.machines - first)
        log = (tmp / f"machines{first}.log").open("wb")
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "bench" / "fleet_machines.py"),
                "--first", str(first), "--count", str(count),
                "--root", str(tmp / "machines"), "--broker", bootstrap,
                "--start-at", str(start_at), "--warmup", str(args.warmup),
                "--seconds", str(args.seconds), "--seed", str(args.seed),
                stdout=asyncio.subprocess.PIPE, stderr=log, env=env,
            )
        )  # fmt: skip
    readers = [asyncio.ensure_future(read_machines(p, fleet, wake)) for p in procs]
    stop_floor = asyncio.Event()
    async with ReplayClient(bootstrap, timeout=30) as client:
        follower = asyncio.ensure_future(follow_topic(bootstrap, fleet, client))
        floor_task = asyncio.ensure_future(floor(bootstrap, stop_floor))
        try:
            while fleet.drained < len(procs):
                await wake.wait()
                wake.clear()
                if any(p.returncode not in (None, 0) for p in procs):
                    raise SystemExit(f"a machines process failed: see {tmp}/machines*.log")
                if fleet.hooks_done == len(procs):
                    stop_floor.set()
            # every spool drained: wait for the last events to replay
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while time.monotonic() < deadline and any(fleet.awaited.values()):
                await asyncio.sleep(0.2)
        finally:
            stop_floor.set()
            floor_times = await floor_task
            follower.cancel()
            for task in (follower, *fleet.pollers.values()):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for p in procs:
                if p.returncode is None:
                    p.terminate()
                await p.wait()
            for r in readers:
                await r
    rate = sum(1 for c in fleet.calls.values() if c.measured) / args.seconds
    counts = await verify(bootstrap, fleet)
    return fleet, floor_times, counts, rate


def stats_row(name: str, values: list[float], floor99: float, goal: str = "") -> list[str]:
    if not values:
        return [name, "0", "-", "-", "-", "-", goal]
    p50, p99 = pct(values, 0.5), pct(values, 0.99)
    return [
        name,
        str(len(values)),
        f"{p50 * 1000:.0f}",
        f"{p99 * 1000:.0f}",
        f"{max(values) * 1000:.0f}",
        f"{p99 / floor99:.1f}",
        goal,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s measured, 1 worker")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--seconds", type=float, help="measured window (default 120, quick 30)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--procs", type=int, default=4, help="processes running the machines")
    parser.add_argument("--workers", type=int, help="worker processes (default 2, quick 1)")
    parser.add_argument("--partitions", type=int, default=PARTITIONS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--watch", type=int, default=10, help="poll every N-th machine's sessions")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data (tmp dir)")
    args = parser.parse_args()
    args.seconds = args.seconds or (30.0 if args.quick else 120.0)
    args.workers = args.workers or (1 if args.quick else 2)
    if (
        min(args.machines, args.procs, args.workers, args.partitions, args.watch) < 1
        or args.seconds <= 0
    ):
        raise SystemExit(
            "bench_fleet: --machines, --procs, --workers, --partitions, --seconds must be positive"
        )
    problem = missing_requirements()
    if problem:
        raise SystemExit(f"bench_fleet: {problem}")
    console = Console(width=150)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        with KafkaCluster(tmp / "cluster") as cluster:
            bootstrap = cluster.bootstrap
            asyncio.run(make_topics(bootstrap, args.partitions))
            with workers(bootstrap, tmp, args.workers, args.partitions):
                asyncio.run(wait_ready(bootstrap, args.partitions))
                console.print(
                    f"{args.machines} machines in {args.procs} processes, {args.workers} "
                    f"worker(s), {args.partitions} partitions; {args.warmup:.0f} s warm-up, "
                    f"{args.seconds:.0f} s measured; load average {load_average()}"
                )
                fleet, floor_times, counts, rate = asyncio.run(run_fleet(args, bootstrap, tmp))
        return report(console, args, fleet, floor_times, counts, rate)
    finally:
        if args.keep:
            console.print(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(
    console: Console,
    args: argparse.Namespace,
    fleet: Fleet,
    floor_times: list[float],
    counts: tuple[int, int, int, int],
    rate: float,
) -> int:
    measured = [c for c in fleet.calls.values() if c.measured]
    shipped = [c.t_topic - c.t_call for c in measured if c.t_topic is not None]
    ingested = [
        c.t_replayed - c.t_topic
        for c in measured
        if c.t_topic is not None and c.t_replayed is not None
    ]
    watched = [
        c for (session, _), c in fleet.calls.items() if c.measured and fleet.watched(session)
    ]
    fresh = [c.t_replayed - c.t_call for c in watched if c.t_replayed is not None]
    unreplayed = len(watched) - len(fresh)  # never came back to a poll: counts as a miss
    floor99 = pct(floor_times, 0.99) if floor_times else float("nan")
    table = Table(
        title=f"fleet: {args.machines} machines, 3 brokers (RF 3, min.insync 2), "
        f"{args.workers} worker(s); latency in ms"
    )
    for col in ("stage", "events", "p50", "p99", "max", "p99 / floor p99", "goal"):
        table.add_column(col, justify="left" if col in ("stage", "goal") else "right")
    table.add_row(*stats_row("floor: aiokafka producer -> consumer", floor_times, floor99))
    table.add_row(*stats_row("hook -> on kaizen.events (spool, shipper)", shipped, floor99))
    table.add_row(*stats_row("on kaizen.events -> replayed (worker, replay)", ingested, floor99))
    table.add_row(*stats_row("replay request -> end marker", fleet.replays, floor99))
    p99 = pct(fresh, 0.99) if fresh else float("inf")
    met = p99 <= GOAL_P99_S and unreplayed == 0
    goal = f"p99 <= {GOAL_P99_S:.0f} s: " + ("[green]yes" if met else "[red]no")
    table.add_row(*stats_row("hook -> replayed (freshness)", fresh, floor99, goal))
    console.print(table)
    once, lost, dup, extra = counts
    calls = len(fleet.calls)
    ok = met and lost == 0 and dup == 0 and extra == 0 and fleet.full_spool == 0
    console.print(
        f"hook calls {calls} ({rate:.1f}/s measured, {rate / args.machines:.3f}/s per machine; "
        f"pace: a hook every {mean_gap(sample_payloads('claude')):.1f} s per session on average); "
        f"replayed once {once}, [{'green' if lost == 0 else 'red'}]lost {lost}[/], "
        f"duplicated {dup}, unexpected {extra}, dropped by a full spool {fleet.full_spool}; "
        f"shipped by the shippers {fleet.shipped}; freshness measured on "
        f"{len(watched)} events of every {args.watch}th machine ({unreplayed} never polled back), "
        f"{len(fleet.replays)} replay requests"
    )
    if fleet.processes:
        worst = [max(p[i] for p in fleet.processes) * 1000 for i in range(4)]
        console.print(
            "machines processes (worst of {}): a shipper round that sent takes {:.0f} ms p50, "
            "{:.0f} ms p99; the event loop wakes {:.0f} ms late p50, {:.0f} ms p99".format(
                len(fleet.processes), *worst
            )
        )
    console.print(f"load average at the end: {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
