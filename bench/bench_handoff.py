"""Handoff: a worker with an empty data dir takes over a partition holding N events.

On each broker `--broker` names (Apache Kafka and the embedded broker by default,
each fresh: bench/brokers.py), one partition holds N events (128 per Kafka
message, many sessions) whose offsets the group has already committed, as if a
previous owner had ingested them and died. A `kaizen-stream worker` with an
empty data dir starts; we time from its start to a complete replay of a session
on that partition (`kaizen-stream replay`, the answer arrives only once the
partition has caught up), and split it into phases from the worker's log
(`PHASES`: process start and broker checks, Faust's start, the group join,
the assignment handler, the catch-up).

Beside it, on the same broker: a Faust app with a Table whose changelog holds
the same N events (one changelog record per event, as a table keeps them)
starts with an empty data dir; we time from its start until the table holds
all N (memory store: the fastest Faust restore there is). A baseline that
crashes, hangs past --faust-timeout or, on Apache Kafka, restores another count
fails the benchmark (exit 1, one line): there is no ratio without it.

Goal: handoff <= 15 s for 1M events, >= 10x faster than the Faust restore.

With `--compare CHECKOUT` it times instead the worker of another checkout (before a
change; its C speed-ups built) against this one's, alternating, `--rounds` each on one
broker, and prints the medians of every phase and their ratios (no Faust baseline).

    .venv/bin/python bench/bench_handoff.py                   # 1M events, both brokers
    .venv/bin/python bench/bench_handoff.py --quick           # 100k events
    .venv/bin/python bench/bench_handoff.py --broker kafka    # Apache Kafka only
    .venv/bin/python bench/bench_handoff.py --broker kafka --compare /tmp/before --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from bench_ingest import commit_offsets, event_factory, produce  # noqa: E402
from brokers import LABELS, add_broker_flag, broker_kinds, load_average, running_broker  # noqa: E402
from worker_process import running_worker, worker_env  # noqa: E402

from workers.broker.embedded import free_port  # noqa: E402

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
# (on Apache Kafka the table then holds all n records; tansu's end offsets lie, so Faust
# stops restoring at the start of the last batch + 1 and the table holds fewer: the
# benchmark counts what it restored and takes the rate)
@app.timer(0.02)
async def check():
    with open(out, "w") as f:
        f.write(f"{{time.time() - t0}} {{len(table)}}")
    os._exit(0)

faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
"""


class BaselineFailed(RuntimeError):
    """The Faust baseline crashed, hung or restored the wrong count: no ratio can be given."""


def faust_restore(bootstrap: str, total: int, workdir: Path, timeout: float) -> tuple[float, int]:
    """(seconds from start to the end of the restore, records the table holds); BaselineFailed
    when the app exits without a result, or does not finish within `timeout`."""
    script = workdir / "restore_app.py"
    script.write_text(FAUST_RESTORE)
    out = workdir / "restore_elapsed"
    log = workdir / "restore.log"
    t0 = time.time()
    args = [str(t0), str(total), bootstrap, str(out), str(workdir / "faust-data")]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], stdout=sink, stderr=subprocess.STDOUT, cwd=workdir
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BaselineFailed(
                f"the Faust restore did not finish in {timeout:.0f} s (--faust-timeout); see {log}"
            ) from None
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BaselineFailed(
            f"the Faust restore exited {proc.returncode} without a result: {tail[0][-300:]}; "
            f"see {log}"
        )
    elapsed, restored = out.read_text().split()
    return float(elapsed), int(restored)


def _log_time(line: str) -> float:
    stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]", line)
    assert stamp
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


# Phases of a handoff, each ending at the first worker log line holding its marker, in order;
# the first phase starts when the process is started.
PHASES = (
    ("process start, imports, broker checks", "[^Worker]: Starting"),
    ("Faust services start, subscription", "(Re-)joining group"),
    ("group join and sync (assignment)", "Successfully synced group"),
    ("assignment handler until catch-up begins", "catching up offsets"),
    ("catch-up (read, check, append, index)", "messages in"),
)


def phases(log_path: Path, t0: float) -> list[tuple[str, float]]:
    """(phase, seconds) of a handoff, from the worker's log (`PHASES`); RuntimeError when a
    marker is missing."""
    lines = log_path.read_text(errors="replace").splitlines()
    out: list[tuple[str, float]] = []
    last, at = t0, 0
    for name, marker in PHASES:
        while at < len(lines) and marker not in lines[at]:
            at += 1
        if at == len(lines):
            raise RuntimeError(f"no {marker!r} in {log_path}")
        stamp = _log_time(lines[at])
        out.append((name, stamp - last))
        last = stamp
    return out


def kaizen_handoff(
    bootstrap: str,
    workdir: Path,
    session: str,
    expected: int,
    *,
    root: Path = ROOT,
    name: str = "worker",
) -> tuple[float, list[tuple[str, float]]]:
    """(start → complete replay, the phases of it from the worker's log), of the worker of
    the checkout `root`, with the data dir and log `name` under `workdir`."""
    env = worker_env(bootstrap, workdir / f"{name}-data", 1)
    log_path = workdir / f"{name}.log"
    t0 = time.time()
    # default log level: the lines it logs time the phases
    with running_worker(
        env,
        log_path,
        web_port=free_port(),
        session_timeout=SESSION_TIMEOUT,
        loglevel=None,
        root=root,
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
    return total, phases(log_path, t0)


@dataclass
class HandoffRun:
    """One broker's figures: the worker's handoff (and its phases) and the Faust restore."""

    kind: str
    total: int
    handoff: float
    phases: list[tuple[str, float]]
    restore_s: float
    restored: int
    load: str

    @property
    def restore_all(self) -> float:
        """Seconds the Faust restore takes for every event (at its rate, when the embedded
        broker's end offsets stopped it early)."""
        return self.total / (self.restored / self.restore_s)

    @property
    def ratio(self) -> float:
        return self.restore_all / self.handoff

    @property
    def catch_up(self) -> float:
        return self.phases[-1][1]

    @property
    def join(self) -> float:
        """From the worker's start until its catch-up begins: what a handoff costs besides
        reading the partition."""
        return sum(secs for _, secs in self.phases[:-1])

    @property
    def met(self) -> bool:
        return self.handoff <= 15 and self.ratio >= 10


def run_on(kind: str, args: argparse.Namespace, total: int, workdir: Path) -> HandoffRun:
    """The handoff and the Faust restore of the same events, on one fresh broker of `kind`."""
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"--- {LABELS[kind]} (load {load_average()})", flush=True)
    with running_broker(kind, workdir, 1) as bootstrap:
        t = time.perf_counter()
        messages, session, per_session = asyncio.run(
            produce_events(bootstrap, total, args.sessions)
        )
        asyncio.run(commit_offsets(bootstrap, {0: messages}))
        print(
            f"{total:,} events in {messages:,} messages on one partition "
            f"({time.perf_counter() - t:.1f}s)",
            flush=True,
        )
        handoff, split = kaizen_handoff(bootstrap, workdir, session, per_session)
        load = load_average()
        print(f"handoff {handoff:.2f}s (load {load})", flush=True)
        t = time.perf_counter()
        asyncio.run(produce_changelog(bootstrap, total, args.sessions))
        print(f"changelog of {total:,} records ({time.perf_counter() - t:.1f}s)", flush=True)
        restore_s, restored = faust_restore(bootstrap, total, workdir, args.faust_timeout)
    # Apache Kafka's end offsets are exact: a restore that stops short of them is broken
    # (the embedded broker's stop Faust early, and the rate is what counts there)
    if restored <= 0 or (kind == "kafka" and restored != total):
        raise BaselineFailed(f"the Faust table restored {restored:,} of {total:,} records")
    return HandoffRun(kind, total, handoff, split, restore_s, restored, load)


def report(run: HandoffRun) -> None:
    total = run.total
    print()
    print(f"{LABELS[run.kind]}, {total:,} events (load {run.load})")
    print(f"{'path':52} {'seconds':>8} {'events/s':>10}")
    rate = total / run.handoff
    print(f"{'kaizen worker: start -> complete replay':52} {run.handoff:8.2f} {rate:10,.0f}")
    print(f"{'  start -> catch-up begins, of which:':52} {run.join:8.2f}")
    for name, secs in run.phases[:-1]:
        print(f"{'    ' + name:52} {secs:8.2f}")
    name, secs = run.phases[-1]
    print(f"{'  ' + name:52} {secs:8.2f} {total / secs:10,.0f}")
    rest = run.handoff - run.join - secs
    print(f"{'  caught up -> replay complete at the client':52} {rest:8.2f}")
    rate = run.restored / run.restore_s
    print(f"{'Faust table changelog restore (memory store)':52} {run.restore_s:8.2f} {rate:10,.0f}")
    if run.restored != total:
        print(f"{'  records restored (end offsets stopped it early)':52} {run.restored:>8,}")
        print(f"{'  at that rate, all events would take':52} {run.restore_all:8.2f}")
    print(
        f"handoff: {run.handoff:.2f}s (goal <= 15 s); Faust restore / handoff: "
        f"{run.ratio:.1f}x (goal >= 10x)"
    )


def unbuilt_speedups(root: Path) -> list[str]:
    """The C speed-ups of the checkout `root` that have no built module beside them."""
    return [
        str(c.relative_to(root))
        for c in sorted((root / "workers").rglob("_c*.c"))
        if not list(c.parent.glob(f"{c.stem}.*.so"))
    ]


def compare_on(kind: str, args: argparse.Namespace, total: int, workdir: Path) -> None:
    """The handoff of the worker of `args.compare` (another checkout: before) against this
    checkout's (after), alternating, `args.rounds` each, on one fresh broker of `kind`;
    prints every run's phases, then the medians and their ratios."""
    before = Path(args.compare).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"--- {LABELS[kind]} (load {load_average()}): before {before}, after {ROOT}", flush=True)
    runs: dict[str, list[tuple[float, list[tuple[str, float]]]]] = {"before": [], "after": []}
    with running_broker(kind, workdir, 1) as bootstrap:
        messages, session, per_session = asyncio.run(
            produce_events(bootstrap, total, args.sessions)
        )
        asyncio.run(commit_offsets(bootstrap, {0: messages}))
        print(f"{total:,} events in {messages:,} messages on one partition", flush=True)
        for r in range(args.rounds):
            order = [("before", before), ("after", ROOT)]
            for label, root in order if r % 2 == 0 else order[::-1]:
                # the last worker (another data dir, so another static member id) leaves the
                # group only when its session times out; a join before that waits for it
                time.sleep(SESSION_TIMEOUT + 2)
                run = kaizen_handoff(
                    bootstrap, workdir, session, per_session, root=root, name=f"{label}-{r}"
                )
                runs[label].append(run)
                cells = " ".join(f"{secs:6.2f}" for _, secs in run[1])
                print(f"{label:7} {run[0]:7.2f}  {cells}  (load {load_average()})", flush=True)
    print()
    print(f"{LABELS[kind]}, {total:,} events, medians of {args.rounds} alternating runs")
    print(f"{'path':52} {'before':>8} {'after':>8} {'ratio':>7}")
    medians = {
        label: [
            statistics.median(t for t, _ in v),
            *(statistics.median(split[i][1] for _, split in v) for i in range(len(PHASES))),
        ]
        for label, v in runs.items()
    }
    names = ["kaizen worker: start -> complete replay", *("  " + n for n, _ in PHASES)]
    for i, name in enumerate(names):
        b, a = medians["before"][i], medians["after"][i]
        print(f"{name:52} {b:8.2f} {a:8.2f} {a / b if b else float('nan'):6.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    parser.add_argument("--events", type=int)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--faust-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--compare",
        metavar="CHECKOUT",
        help="time the worker of another checkout (its C speed-ups built) against this one's, "
        "alternating, instead of the Faust baseline",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each with --compare")
    add_broker_flag(parser)
    args = parser.parse_args()
    kinds = broker_kinds(args.broker)
    total = args.events or (100_000 if args.quick else 1_000_000)
    total -= total % args.sessions
    if args.compare:
        if not (Path(args.compare) / "workers" / "__init__.py").is_file():
            raise SystemExit(f"bench_handoff: {args.compare} is no checkout of kaizen-stream")
        unbuilt = unbuilt_speedups(Path(args.compare))
        if unbuilt:
            raise SystemExit(f"bench_handoff: {args.compare} has no built {unbuilt[0]} (make dev)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    keep = args.keep
    if args.compare:
        try:
            for kind in kinds:
                compare_on(kind, args, total, workdir / kind)
        finally:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
        return 0
    try:
        runs = [run_on(kind, args, total, workdir / kind) for kind in kinds]
    except BaselineFailed as exc:
        keep = True  # the logs it names
        print(f"bench_handoff: FAILED, no ratio: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for run in runs:
        report(run)
    print()
    head = f"{'handoff s':>10} {'join s':>7} {'restore s':>10} {'ratio':>7} {'load':>16}"
    print(f"{'broker':26} {head}  goal")
    for run in runs:
        print(
            f"{LABELS[run.kind]:26} {run.handoff:10.2f} {run.join:7.2f} {run.restore_all:10.2f} "
            f"{run.ratio:6.1f}x {run.load:>16}  {'met' if run.met else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
