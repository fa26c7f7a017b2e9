"""Ingest throughput and replay latency over SASL_SSL beside PLAINTEXT, on one Apache Kafka broker.

One Apache Kafka node (tests/security/secured_kafka.py: TLS, SCRAM, the
StandardAuthorizer) with a PLAINTEXT and a SASL_SSL listener. N events (the
shipper's batch format, many sessions) are produced once; then, for each
listener in turn, in the same run:

  ingest  `kaizen-stream worker` (fresh data dir, group offsets at 0) from its
          first ingested event to the last one durably indexed (its /metrics);
          over SASL_SSL it connects as the `worker` principal with exactly the
          documented ACLs
  replay  the same worker answering replays of whole sessions to a
          `ReplayClient` (as the `replay` principal over SASL_SSL): p50 and p99
          from request to the end marker

The broker runs with the default (full tiered) JIT, as a production broker does:
the test fixture's C1-only JVM has no AES-GCM intrinsics and made SASL_SSL look
several times slower than it is. Before the timed rounds, every event is read
`--warmup` times over each listener (a plain aiokafka consumer), so the broker's
TLS path is compiled before either listener is timed.

Each listener runs `--rounds` times (default 3), alternating which goes first;
the table shows medians, with the ratio of SASL_SSL to PLAINTEXT (goal: >= 0.8 for both;
for latency the ratio is plaintext's over SASL_SSL's, so higher is better).

    .venv/bin/python bench/bench_security.py            # 400k events, 60 replays
    .venv/bin/python bench/bench_security.py --quick    # 100k events, 30 replays
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka.errors import CommitFailedError  # noqa: E402
from bench_ingest import commit_offsets, produce, read_through, scrape  # noqa: E402
from worker_process import running_worker, worker_env  # noqa: E402

from tests.security.secured_kafka import SecuredKafka  # noqa: E402
from workers.broker.embedded import free_port  # noqa: E402
from workers.broker.topics import ensure_topics  # noqa: E402
from workers.kafka import clients  # noqa: E402
from workers.kafka.config import KafkaConnection  # noqa: E402
from workers.replay.client import ReplayClient, ReplayResult  # noqa: E402

PARTITIONS = 4


async def replay_latencies(conn: KafkaConnection, sessions: list[str], expect: int) -> list[float]:
    """Seconds from request to end marker, one replay at a time, each session in turn."""
    out: list[float] = []
    async with ReplayClient(conn, timeout=60) as client:
        for session in sessions:
            t0 = time.perf_counter()
            result = None
            async for item in client.replay(client.request(session)):
                if isinstance(item, ReplayResult):
                    result = item
            assert result is not None and result.complete and result.received == expect, session
            out.append(time.perf_counter() - t0)
    return out


async def read_all(conn: KafkaConnection, messages: int) -> None:
    """Read every message of the events topic once, outside any group (a warm-up)."""
    await read_through(
        clients.new_consumer(conn, role="bench-warmup", group_id=None, enable_auto_commit=False),
        messages,
    )


def reset_group(bootstrap: str, timeout: float = 120.0) -> None:
    """The worker group's offsets back to 0, once the last run's (static) member is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(commit_offsets(bootstrap, dict.fromkeys(range(PARTITIONS), 0)))
            return
        except CommitFailedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def run(
    kafka: SecuredKafka, name: str, total: int, sessions: list[str], per_session: int, work: Path
) -> tuple[float, float, float]:
    """(events/s, replay p50 s, replay p99 s) of one worker over listener `name`."""
    work.mkdir(parents=True, exist_ok=True)
    reset_group(kafka.plain_bootstrap)
    if name == "PLAINTEXT":
        env = worker_env(kafka.plain_bootstrap, work / f"data-{name}", PARTITIONS)
        client = KafkaConnection((kafka.plain_bootstrap,))
    else:
        env = worker_env(kafka.sasl_bootstrap, work / f"data-{name}", PARTITIONS)
        env.update(kafka.env("worker"))
        env["KAIZEN_PARTITIONS"] = str(PARTITIONS)
        client = kafka.connection("replay")
    port = free_port()
    with running_worker(env, work / f"worker-{name}.log", web_port=port) as proc:
        t_first = first_done = None
        deadline = time.monotonic() + 900
        while True:
            done = scrape(port).get("kaizen_ingest_ingested_total", 0)
            if done and t_first is None:
                t_first, first_done = time.perf_counter(), done
            if done >= total:
                assert t_first is not None and first_done is not None
                elapsed = time.perf_counter() - t_first
                rate = (done - first_done) / elapsed if elapsed > 0 else float("inf")
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker failed; see {work / f'worker-{name}.log'}")
            time.sleep(0.05)
        asyncio.run(replay_latencies(client, sessions[:3], per_session))  # warm up
        lat = sorted(asyncio.run(replay_latencies(client, sessions, per_session)))
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return rate, statistics.median(lat), p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events, 30 replays")
    parser.add_argument("--events", type=int)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--replays", type=int)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per listener, alternating; medians shown"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed reads of every event per listener first"
    )
    args = parser.parse_args()
    total = args.events or (100_000 if args.quick else 400_000)
    total -= total % args.sessions
    replays = args.replays or (30 if args.quick else 60)
    work = Path(tempfile.mkdtemp(prefix="bench-security-"))
    kafka = SecuredKafka(work / "kafka", ["worker", "replay"], open_plaintext=True, full_jit=True)
    kafka.partitions = PARTITIONS
    kafka.start()
    try:
        kafka.grant(("worker", "worker"), ("replay", "replay"))
        asyncio.run(ensure_topics(kafka.plain_bootstrap, PARTITIONS, timeout=60))
        messages = asyncio.run(produce(kafka.plain_bootstrap, total, args.sessions))
        for _ in range(args.warmup):
            for conn in (KafkaConnection((kafka.plain_bootstrap,)), kafka.connection("worker")):
                asyncio.run(read_all(conn, messages))
        per_session = total // args.sessions
        sessions = [
            f"bench-{s:05d}" for s in range(0, args.sessions, max(1, args.sessions // replays))
        ]
        sessions = sessions[:replays]
        runs: dict[str, list[tuple[float, float, float]]] = {"PLAINTEXT": [], "SASL_SSL": []}
        for r in range(args.rounds):
            # alternate the order, so neither listener always runs on a warmer broker
            order = ("PLAINTEXT", "SASL_SSL") if r % 2 == 0 else ("SASL_SSL", "PLAINTEXT")
            for name in order:
                runs[name].append(run(kafka, name, total, sessions, per_session, work / str(r)))
    finally:
        kafka.stop()
    rows = {
        name: tuple(statistics.median(x[i] for x in found) for i in range(3))
        for name, found in runs.items()
    }
    plain, secure = rows["PLAINTEXT"], rows["SASL_SSL"]
    print(
        f"\n{total} events, {args.sessions} sessions ({per_session} events each), "
        f"{len(sessions)} replays, Apache Kafka 4.1.1 (full JIT), one broker, {PARTITIONS} "
        f"partitions; {args.warmup} warm-up reads each; medians of {args.rounds} alternating rounds"
    )
    print(f"{'listener':<10} {'ingest ev/s':>12} {'replay p50 ms':>14} {'replay p99 ms':>14}")
    for name, (rate, p50, p99) in rows.items():
        print(f"{name:<10} {rate:>12,.0f} {p50 * 1000:>14.1f} {p99 * 1000:>14.1f}")
    print(
        f"{'ratio':<10} {secure[0] / plain[0]:>12.2f} {plain[1] / secure[1]:>14.2f} "
        f"{plain[2] / secure[2]:>14.2f}   (SASL_SSL vs PLAINTEXT; goal >= 0.8)"
    )


if __name__ == "__main__":
    main()
