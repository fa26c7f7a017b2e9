"""Benchmark: replay of one session, from request to end marker, small log vs 100x bigger log.

    .venv/bin/python bench/bench_replay.py            # 10k-event session, +1M unrelated events
    .venv/bin/python bench/bench_replay.py --quick    # 1k-event session, +100k unrelated events
    .venv/bin/python bench/bench_replay.py --broker kafka    # Apache Kafka only

Everything is real: on each broker `--broker` names (Apache Kafka and the
embedded broker by default, each fresh: bench/brokers.py), one worker
(`kaizen-stream worker` in a subprocess) with its own data dir, a replay
client (no consumer group) measuring from sending the request to receiving
the end marker, with every event of the session in between.

Cases, each the median of --runs replays:
  small      session A (N events) in a log holding only A
  big        session A again, after 100*N unrelated events were ingested
  big-mixed  session B (N events), produced interleaved with the unrelated events
The ratios big/small and big-mixed/small show that replay cost follows the
session, not the log (index-driven reads). Goals: small <= 0.5 s, ratios <= 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from brokers import LABELS, add_broker_flag, broker_kinds, load_average, running_broker
from worker_process import running_worker, worker_env

from workers.broker.embedded import free_port
from workers.codec import batch
from workers.codec.event import complete_event, encode_event
from workers.replay.client import ReplayClient
from workers.settings import EVENTS_TOPIC

PARTITIONS = 4
PER_MESSAGE = 500


def events_of(session: str, count: int, rng: random.Random) -> list[bytes]:
    kinds = ["tool_call", "tool_result", "message", "cost", "hook"]
    base = complete_event({"session_id": session, "seq": 0, "ts_ms": 0, "agent": "claude"})
    out = []
    t = 1_760_000_000_000
    for seq in range(count):
        t += rng.randrange(1, 5000)
        event = dict(base)
        event.update(
            seq=seq,
            ts_ms=t,
            kind=kinds[seq % 5],
            tool=("Bash", "Edit", None)[seq % 3],
            tokens_in=rng.randrange(10_000),
            payload='{"text": "%s"}' % ("x" * rng.randrange(20, 300)),
        )
        out.append(encode_event(event))
    return out


def messages_of(session: str, encoded: list[bytes]) -> list[tuple[bytes, bytes]]:
    key = session.encode()
    return [
        (key, batch.join(encoded[i : i + PER_MESSAGE])) for i in range(0, len(encoded), PER_MESSAGE)
    ]


async def produce(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 << 20
    )
    await producer.start()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(EVENTS_TOPIC, value, key=key))
            if len(pending) >= 200:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def wait_ingested(client: ReplayClient, session: str, last_seq: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        events, _ = await client.collect(session, from_seq=last_seq)
        if events:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {session} not ingested within {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def time_replays(client: ReplayClient, session: str, expected: int, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        events, result = await client.collect(session)
        times.append(time.perf_counter() - start)
        if len(events) != expected or not result.complete:
            raise SystemExit(f"bench: replay of {session} gave {len(events)} of {expected}")
    return times


async def bench(
    bootstrap: str, n: int, factor: int, runs: int, settle: float
) -> list[tuple[str, int, list[float]]]:
    rng = random.Random(7)
    rows: list[tuple[str, int, list[float]]] = []
    async with ReplayClient(bootstrap, timeout=60) as client:
        await produce(bootstrap, messages_of("bench-A", events_of("bench-A", n, rng)))
        await wait_ingested(client, "bench-A", n - 1, 300)
        await time_replays(client, "bench-A", n, 2)  # warm-up
        rows.append(("small", n, await time_replays(client, "bench-A", n, runs)))

        # 100x unrelated events, in sessions of n events over every partition; session B
        # is interleaved with them, message by message
        filler_sessions = [f"bench-F{i}" for i in range(factor)]
        t0 = time.perf_counter()
        b_messages = messages_of("bench-B", events_of("bench-B", n, rng))
        filler = [messages_of(s, events_of(s, n, rng)) for s in filler_sessions]
        mixed: list[tuple[bytes, bytes]] = []
        for i, chunk in enumerate(zip(*filler, strict=True)):
            mixed.extend(chunk)
            if i < len(b_messages):
                mixed.append(b_messages[i])
        print(f"  encoded {factor * n + n:,} events in {time.perf_counter() - t0:.1f}s", flush=True)
        t0 = time.perf_counter()
        await produce(bootstrap, mixed)
        for s in [*filler_sessions, "bench-B"]:
            await wait_ingested(client, s, n - 1, 900)
        print(
            f"  produced + ingested {factor * n + n:,} events in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        # let the worker finish what ingest left behind (RocksDB flushes and compactions)
        # so that the big case measures the steady state, as the small case does
        await asyncio.sleep(settle)
        await time_replays(client, "bench-A", n, 3)
        await time_replays(client, "bench-B", n, 3)
        big: list[float] = []
        mixed: list[float] = []
        for _ in range(runs):  # alternate, so that drift hits both the same
            big += await time_replays(client, "bench-A", n, 1)
            mixed += await time_replays(client, "bench-B", n, 1)
        rows.append(("big", (factor + 2) * n, big))
        rows.append(("big-mixed", (factor + 2) * n, mixed))
    return rows


def run_on(kind: str, args: argparse.Namespace, n: int) -> list[tuple[str, int, list[float]]]:
    """Every case on a fresh broker of `kind` and one worker."""
    print(f"--- {LABELS[kind]} (load {load_average()})", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp,
        running_broker(kind, Path(tmp), PARTITIONS) as bootstrap,
    ):
        env = worker_env(bootstrap, Path(tmp) / "data", PARTITIONS)
        with running_worker(env, Path(tmp) / "worker.log", web_port=free_port()):
            print(
                f"bench_replay: session {n:,} events, +{args.factor}x unrelated, {args.runs} runs"
            )
            return asyncio.run(bench(bootstrap, n, args.factor, args.runs, args.settle))


def report(kind: str, n: int, rows: list[tuple[str, int, list[float]]], load: str) -> bool:
    """The table of one broker's cases; whether its goals are met."""
    base = statistics.median(rows[0][2])
    base_min = min(rows[0][2])
    print()
    print(f"{LABELS[kind]} (load {load})")
    print(
        "| case      | events in log | session | median s | min s  "
        "| events/s  | ratio | min ratio |"
    )
    print(
        "|-----------|--------------:|--------:|---------:|-------:|----------:|------:|----------:|"
    )
    for name, in_log, times in rows:
        med = statistics.median(times)
        print(
            f"| {name:<9} | {in_log:>13,} | {n:>7,} | {med:>8.3f} | {min(times):>6.3f} "
            f"| {n / med:>9,.0f} | {med / base:>5.2f} | {min(times) / base_min:>9.2f} |"
        )
    worst = max(statistics.median(t) for _, _, t in rows[1:]) / base
    ok = base <= 0.5 and worst <= 1.3
    print(
        f"goal: small <= 0.5 s ({base:.3f} s), ratio <= 1.3 ({worst:.2f}): "
        f"{'met' if ok else 'NOT met'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k-event session, +100k events")
    parser.add_argument("--events", type=int, help="session size (default 10000, quick 1000)")
    parser.add_argument("--factor", type=int, default=100, help="unrelated events x session size")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds to wait after ingest (default 5)"
    )
    add_broker_flag(parser)
    args = parser.parse_args()
    kinds = broker_kinds(args.broker)
    n = args.events or (1000 if args.quick else 10_000)
    results = []
    for kind in kinds:
        rows = run_on(kind, args, n)
        results.append((kind, rows, load_average()))
    print()
    met = {kind: report(kind, n, rows, load) for kind, rows, load in results}
    print()
    for kind, rows, load in results:
        base = statistics.median(rows[0][2])
        worst = max(statistics.median(t) for _, _, t in rows[1:]) / base
        print(
            f"{LABELS[kind]:26} small {base:.3f} s, worst ratio {worst:.2f} (load {load}): "
            f"{'met' if met[kind] else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
