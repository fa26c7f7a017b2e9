"""Durable end-to-end ingest throughput of one worker process, against two baselines.

On each broker `--broker` names (Apache Kafka and the embedded broker by default,
each fresh: bench/brokers.py), N events (128 per Kafka message, the shipper's
batch format, many sessions) are produced to kaizen.events; then, in the same
run and on the same broker:

  raw     an aiokafka getmany loop reading every message (the client's ceiling)
  noop    a Faust agent over the same topic that does nothing per message
  worker  `kaizen-stream worker` (a separate process, fsync on), from its first
          ingested event to the last one durably indexed (read from /metrics)
  pure    the same worker with KAIZEN_PURE_PYTHON=1 (no C speed-ups), on the same
          events again (`--no-pure` skips it)
  -<name> with `--shares`: the same worker with one speed-up off
          (KAIZEN_PURE_PYTHON=<name>, one row per `workers.speedups.NAMES`), to show
          each one's share
  single  item 5 of issue 13: a tenth as many events (--single), ONE plain
          single-object event per message as any Avro-capable producer writes,
          on a fresh broker of its own: the no-op agent and the worker over them
          (`--no-single` skips it, `--only-single` runs only it)

and prints events/s and Kafka messages/s of each, with the ratios, a table per
broker and a summary line per broker. Goals, on each broker: worker >= 100k
events/s, and >= 10x the no-op agent's message rate (on the same broker) in events;
one event per message: the worker's messages/s >= the no-op agent's.

    .venv/bin/python bench/bench_ingest.py                   # 1M events, both brokers
    .venv/bin/python bench/bench_ingest.py --quick           # 200k events
    .venv/bin/python bench/bench_ingest.py --broker kafka    # Apache Kafka only
    .venv/bin/python bench/bench_ingest.py --quick --shares
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from brokers import LABELS, add_broker_flag, broker_kinds, load_average, running_broker  # noqa: E402
from worker_process import running_worker, worker_env  # noqa: E402

from workers import speedups  # noqa: E402
from workers.broker.embedded import free_port  # noqa: E402
from workers.codec import batch  # noqa: E402
from workers.codec.event import complete_event, encode_event  # noqa: E402
from workers.ingest import metrics  # noqa: E402
from workers.settings import EVENTS_TOPIC  # noqa: E402

PARTITIONS = 4
PER_MESSAGE = 128


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


CALL_ID = "toolu_%010d"


def event_factory(session_id: str) -> Any:
    """Fast encoder for one session: header + session_id + seq + a fixed 200-byte-ish rest,
    whose tool call id is the seq in 10 digits (every call its own, as in a real session:
    the summaries keep one entry per call id)."""
    template = encode_event(
        complete_event(
            {
                "session_id": session_id,
                "seq": 0,
                "ts_ms": 1_760_000_000_000,
                "producer": "0123456789abcdef",  # a hook event's: its spool's id
                "kind": "tool_call",
                "agent": "claude",
                "model": "claude-opus-4",
                "workspace": "~/src/project",
                "host": "devbox",
                "tool": "Bash",
                "tool_call_id": CALL_ID % 0,
                "tokens_in": 1234,
                "tokens_out": 56,
                "cost_usd_e6": 4321,
                "latency_ms": 1500,
                "payload": json.dumps({"command": "ls -la", "description": "list" * 20}),
            }
        )
    )
    sid = session_id.encode()
    head = template[:10] + _zigzag(len(sid)) + sid
    rest = template[len(head) + 1 :]  # seq 0 is one byte
    before, after = rest.split((CALL_ID % 0).encode())  # a fixed width: no length changes

    def make(seq: int) -> bytes:
        return head + _zigzag(seq) + before + (CALL_ID % seq).encode() + after

    return make


async def produce(
    bootstrap: str,
    total: int,
    sessions: int,
    *,
    prefix: str = "bench",
    partition: int | None = None,
) -> int:
    """`total` events of `sessions` sessions `<prefix>-00000`..., PER_MESSAGE per batch
    message, interleaved across sessions (into one partition when given); the messages sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    messages = 0
    try:
        per_session = total // sessions
        makers = [event_factory(f"{prefix}-{s:05d}") for s in range(sessions)]
        futures = []
        for start in range(0, per_session, PER_MESSAGE):
            for s, make in enumerate(makers):
                end = min(start + PER_MESSAGE, per_session)
                value = batch.join([make(q) for q in range(start, end)])
                key = f"{prefix}-{s:05d}".encode()
                futures.append(
                    await producer.send(EVENTS_TOPIC, value, key=key, partition=partition)
                )
                messages += 1
            if len(futures) > 2000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return messages


async def read_through(consumer: AIOKafkaConsumer, messages: int) -> float:
    """Start `consumer`, read `messages` of kaizen.events from the start of every partition
    (no group), stop it; the seconds from the seek to the last message."""
    await consumer.start()
    try:
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        t0 = time.perf_counter()
        while seen < messages:
            got = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in got.values():
                seen += len(records)
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


async def raw_read(bootstrap: str, messages: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=32 << 20,
    )
    return await read_through(consumer, messages)


NOOP_APP = """
import os, sys, time, faust
n = int(sys.argv[1]); broker = sys.argv[2]
app = faust.App("bench-noop-" + sys.argv[3], broker="kafka://" + broker, store="memory://",
    topic_allow_declare=False, topic_disable_leader=True, web_enabled=False,
    consumer_auto_offset_reset="earliest", broker_session_timeout=6, broker_heartbeat_interval=1,
    consumer_max_fetch_size=32 << 20, key_serializer="raw", value_serializer="raw")
topic = app.topic("kaizen.events", key_type=bytes, value_type=bytes,
    key_serializer="raw", value_serializer="raw")
state = {"seen": 0, "t0": None}

@app.agent(topic)
async def noop(stream):
    async for _ in stream:
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        state["seen"] += 1
        if state["seen"] >= n:
            with open(sys.argv[4], "w") as f:
                f.write(str(time.perf_counter() - state["t0"]))
            os._exit(0)  # stopping the app from inside its own agent would wait for this event

faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
"""


def noop_faust(bootstrap: str, messages: int, workdir: Path) -> float:
    script = workdir / "noop_app.py"
    script.write_text(NOOP_APP)
    result = workdir / "noop_elapsed"
    out = subprocess.run(
        [sys.executable, str(script), str(messages), bootstrap, str(os.getpid()), str(result)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=workdir,
        check=False,
    )
    if not result.exists():
        raise RuntimeError("no-op agent did not finish:\n" + (out.stdout + out.stderr)[-3000:])
    return float(result.read_text())


def scrape(port: int) -> dict[str, int]:
    """The worker's metrics, each summed over its partitions; empty while it does not answer."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return {}
    return metrics.totals(text.decode())


WORKER_GROUP = "kaizen-stream"  # the worker's consumer group (its Faust app id)


async def commit_offsets(bootstrap: str, offsets: dict[int, int]) -> None:
    """Commit the worker group's offsets of kaizen.events, as a previous owner would have."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=WORKER_GROUP, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = {TopicPartition(EVENTS_TOPIC, p): offset for p, offset in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def produce_single(bootstrap: str, total: int, sessions: int) -> int:
    """`total` events of `sessions` sessions `single-00000`..., ONE plain single-object event
    per Kafka message (key = session id), by a plain aiokafka producer with its defaults, as
    any Avro-capable producer writes them; interleaved across sessions, seq order within
    each; the messages sent (= `total`)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        per_session = total // sessions
        keys = [f"single-{s:05d}".encode() for s in range(sessions)]
        makers = [event_factory(key.decode()) for key in keys]
        futures = []
        for seq in range(per_session):
            for key, make in zip(keys, makers, strict=True):
                futures.append(await producer.send(EVENTS_TOPIC, make(seq), key=key))
            if len(futures) > 20_000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return per_session * sessions


def single_object_row(
    bootstrap: str, total: int, sessions: int, workdir: Path
) -> tuple[float, float, dict[str, int]]:
    """Item 5's row, on a fresh broker with the topics: `total` events one per message; the
    seconds of the no-op Faust agent and of the worker over them, and the worker's metrics."""
    workdir.mkdir(parents=True, exist_ok=True)
    messages = asyncio.run(produce_single(bootstrap, total, sessions))
    noop_s = noop_faust(bootstrap, messages, workdir)
    # the group at offset 0: the catch-up has nothing to read, so the worker's live path
    # (workers/ingest/feed.py) ingests every message, as it does new ones
    asyncio.run(commit_offsets(bootstrap, dict.fromkeys(range(PARTITIONS), 0)))
    worker_s, m = worker_run(bootstrap, total, workdir)
    return noop_s, worker_s, m


def report_single(total: int, noop_s: float, worker_s: float, m: dict[str, int]) -> None:
    """The one-event-per-message row beside the no-op agent, and their ratio (goal >= 1)."""
    print()
    print(f"one single-object event per message: {total:,} messages")
    print(f"{'path':44} {'seconds':>8} {'msgs/s':>10}")
    print(f"{'no-op Faust agent':44} {noop_s:8.2f} {total / noop_s:10,.0f}")
    print(f"{'kaizen worker (fsync, durable)':44} {worker_s:8.2f} {total / worker_s:10,.0f}")
    print(f"worker msgs/s / no-op agent msgs/s:   {noop_s / worker_s:6.2f}x  (goal >= 1x)")
    dead = m.get("kaizen_ingest_dead_lettered_total", 0)
    dups = m.get("kaizen_ingest_duplicates_total", 0)
    flushes = m.get("kaizen_ingest_flushes_total", 0)
    print(f"dead-lettered {dead}, duplicates {dups}, flushes {flushes}")


def worker_run(
    bootstrap: str, total: int, workdir: Path, *, off: str = ""
) -> tuple[float, dict[str, int]]:
    """Seconds for a worker (fresh data dir) to ingest `total` events durably; its metrics.

    `off`: the value of ``KAIZEN_PURE_PYTHON`` (``1``: no C speed-up; a switch name: that
    one off).
    """
    port = free_port()
    name = f"worker-off-{off}" if off else "worker"
    workdir.mkdir(parents=True, exist_ok=True)
    env = worker_env(bootstrap, workdir / f"data-{name}", PARTITIONS, **{speedups.DISABLE_ENV: off})
    with running_worker(env, workdir / f"{name}.log", web_port=port) as proc:
        t_first = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            m = scrape(port)
            # counted at the group commit, after the fsync and the index write: the clock
            # stops when the last event is durable and indexed, not when it is appended
            done = m.get("kaizen_ingest_ingested_total", 0)
            if done and t_first is None:
                # first progress seen: back-date by the events already in at this poll
                t_first = time.perf_counter()
                first_done = done
            if done >= total:
                assert t_first is not None
                elapsed = time.perf_counter() - t_first
                # the events before the first poll took about (first_done / rate) seconds
                rate = (done - first_done) / elapsed if elapsed > 0 else float("inf")
                return (total / rate if rate else elapsed), m
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {workdir / f'{name}.log'}")
            time.sleep(0.05)
        raise RuntimeError("worker did not finish")


#: the one-event-per-message row: (events, no-op agent s, worker s, worker metrics)
SingleRow = tuple[int, float, float, dict[str, int]]


@dataclass
class BrokerRun:
    """What one broker's run measured: the Kafka messages, events, and seconds of each path."""

    kind: str
    load: str
    messages: int
    total: int
    raw_s: float
    noop_s: float
    worker_s: float
    metrics: dict[str, int]
    others: list[tuple[str, float]] = field(default_factory=list)
    #: the one-event-per-message row: (events, no-op agent s, worker s, worker metrics)
    single: SingleRow | None = None

    @property
    def worker_events(self) -> float:
        return self.total / self.worker_s

    @property
    def ratio(self) -> float:
        """The worker's events/s over the no-op agent's messages/s (goal >= 10)."""
        return self.worker_events / (self.messages / self.noop_s)

    @property
    def met(self) -> bool:
        return self.worker_events >= 100_000 and self.ratio >= 10

    @property
    def single_ratio(self) -> float | None:
        """One event per message: the worker's messages/s over the no-op agent's (goal >= 1)."""
        return None if self.single is None else self.single[1] / self.single[2]


def single_total(args: argparse.Namespace) -> int:
    """Events of the one-event-per-message row (--single, default a tenth of the main run)."""
    total: int = args.single or (args.events or (200_000 if args.quick else 1_000_000)) // 10
    return total - total % int(args.sessions)


def single_on(
    kind: str, args: argparse.Namespace, workdir: Path
) -> tuple[int, float, float, dict[str, int]]:
    """The one-event-per-message row on a fresh broker of `kind` of its own."""
    total = single_total(args)
    with running_broker(kind, workdir, PARTITIONS) as bootstrap:
        return (total, *single_object_row(bootstrap, total, args.sessions, workdir / "single"))


def only_single(args: argparse.Namespace, kinds: list[str]) -> None:
    """The one-event-per-message row alone (`--only-single`), on each broker."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        rows = [(kind, load_average(), single_on(kind, args, workdir / kind)) for kind in kinds]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for kind, load, row in rows:
        print(f"\n{LABELS[kind]} (load {load})", end="")
        report_single(*row)


def run_on(kind: str, args: argparse.Namespace, total: int, workdir: Path) -> BrokerRun:
    """Every path of the benchmark on fresh brokers of `kind`, in one run."""
    # A group that has committed offset 0: the worker's catch-up has nothing to read, so
    # every event goes through the Faust ingest agent, the path this benchmark is for
    # (a group without commits would catch up with a raw consumer: bench_handoff.py).
    start = dict.fromkeys(range(PARTITIONS), 0)
    print(f"--- {LABELS[kind]} (load {load_average()})", flush=True)
    with running_broker(kind, workdir, PARTITIONS) as bootstrap:
        t0 = time.perf_counter()
        messages = asyncio.run(produce(bootstrap, total, args.sessions))
        took = time.perf_counter() - t0
        print(f"produced {total:,} events in {messages:,} messages in {took:.1f}s", flush=True)
        raw_s = asyncio.run(raw_read(bootstrap, messages))
        noop_s = noop_faust(bootstrap, messages, workdir)
        asyncio.run(commit_offsets(bootstrap, start))
        worker_s, m = worker_run(bootstrap, total, workdir / kind)
    run = BrokerRun(kind, load_average(), messages, total, raw_s, noop_s, worker_s, m)
    runs = [] if args.no_pure else [("  pure Python (no C speed-ups)", "1")]
    if args.shares:
        runs += [(f"  without {name} (KAIZEN_PURE_PYTHON={name})", name) for name in speedups.NAMES]
    for label, off in runs:
        # a broker of its own: tansu keeps the stopped worker in the group, and Apache Kafka
        # keeps a static member until its session times out; either refuses the commit of
        # offset 0 that would let a second worker reread the events
        with running_broker(kind, workdir, PARTITIONS) as bootstrap:
            asyncio.run(produce(bootstrap, total, args.sessions))
            asyncio.run(commit_offsets(bootstrap, start))
            run.others.append((label, worker_run(bootstrap, total, workdir / kind, off=off)[0]))
    if not args.no_single:
        run.single = single_on(kind, args, workdir / kind)
    return run


def report(run: BrokerRun) -> None:
    """The table of one broker's run and its ratios."""
    messages, total = run.messages, run.total
    rows = [
        ("raw aiokafka getmany", run.raw_s, None),
        ("no-op Faust agent", run.noop_s, None),
        ("kaizen worker (fsync, durable)", run.worker_s, total),
    ]
    rows += [(label, secs, total) for label, secs in run.others]
    print()
    print(f"{LABELS[run.kind]}, {total:,} events in {messages:,} messages (load {run.load})")
    print(f"{'path':44} {'seconds':>8} {'msgs/s':>10} {'events/s':>11}")
    for name, secs, events in rows:
        ev = f"{events / secs:>11,.0f}" if events else f"{'-':>11}"
        print(f"{name:44} {secs:8.2f} {messages / secs:10,.0f} {ev}")
    print()
    print(f"worker events/s / no-op agent msgs/s: {run.ratio:6.1f}x  (goal >= 10x)")
    print(f"worker events/s:                      {run.worker_events:10,.0f}  (goal >= 100,000)")
    print(f"worker msgs/s / raw getmany msgs/s:   {run.raw_s / run.worker_s:6.3f}")
    for label, secs in run.others:
        print(f"worker / {label.strip()}: {secs / run.worker_s:6.2f}x")
    m = run.metrics
    print(
        f"dead-lettered {m.get('kaizen_ingest_dead_lettered_total', 0)}, "
        f"duplicates {m.get('kaizen_ingest_duplicates_total', 0)}, "
        f"flushes {m.get('kaizen_ingest_flushes_total', 0)}"
    )
    if run.single is not None:
        report_single(*run.single)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k events instead of 1M")
    parser.add_argument("--events", type=int)
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--no-pure", action="store_true", help="skip the pure-Python worker row (C speed-ups off)"
    )
    parser.add_argument(
        "--shares", action="store_true", help="a worker row per speed-up switched off alone"
    )
    parser.add_argument(
        "--single", type=int, help="events of the one-event-per-message row (default: a tenth)"
    )
    parser.add_argument("--no-single", action="store_true", help="skip that row")
    parser.add_argument("--only-single", action="store_true", help="only that row")
    add_broker_flag(parser)
    args = parser.parse_args()
    kinds = broker_kinds(args.broker)
    if args.only_single:
        only_single(args, kinds)
        return 0
    total = args.events or (200_000 if args.quick else 1_000_000)
    total -= total % args.sessions
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        runs = [run_on(kind, args, total, workdir) for kind in kinds]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for run in runs:
        report(run)
    print()
    head = f"{'worker events/s':>16} {'x no-op agent':>14} {'1/msg x no-op':>14} {'load':>16}"
    print(f"{'broker':26} {head}  goals")
    for run in runs:
        single = "-" if run.single_ratio is None else f"{run.single_ratio:.2f}x"
        goals = "met" if run.met else "NOT met"
        if run.single_ratio is not None:
            goals += ", 1/msg " + ("met" if run.single_ratio >= 1 else "NOT met")
        print(
            f"{LABELS[run.kind]:26} {run.worker_events:16,.0f} {run.ratio:13.1f}x "
            f"{single:>14} {run.load:>16}  {goals}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
