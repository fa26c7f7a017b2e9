"""Ingest throughput with session summaries on, against the same worker with them off.

    .venv/bin/python bench/bench_aggregates.py            # 400k events, 2 rounds
    .venv/bin/python bench/bench_aggregates.py --quick    # 100k events, 1 round

Each run: a fresh embedded broker, N events produced (bench_ingest's events, 128
per message, many sessions), then one `kaizen-stream worker` with
KAIZEN_AGGREGATES=0 or 1 timed from its first ingested event to the last one
durably indexed (bench_ingest's method). With summaries on, the time until the
summaries hold every event is also shown: the worker folds them from the
durable log in its idle time and in slices during a burst
(workers/analytics/store.py), so ingest keeps its pace and the summaries
follow. Rounds alternate off/on so that machine noise hits both. Goal: on/off
ingest throughput >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import PARTITIONS, commit_offsets, produce, scrape  # noqa: E402
from brokers import running_broker  # noqa: E402
from worker_process import running_worker, worker_env  # noqa: E402

from workers.analytics.store import SUMMARIES_DIR, SummaryStore  # noqa: E402
from workers.broker.embedded import free_port  # noqa: E402
from workers.settings import EVENTS_TOPIC  # noqa: E402


def summarised(data: Path) -> int:
    """Events counted in the summaries of a data dir (read-only, the worker may run)."""
    total = 0
    for p in range(PARTITIONS):
        d = data / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        if not (d / SUMMARIES_DIR).is_dir():
            continue
        try:
            store = SummaryStore.open(d, read_only=True)
        except Exception:  # created but not yet written
            continue
        try:
            total += sum(s.event_count for s in store.all())
        finally:
            store.close()
    return total


def one_run(total: int, sessions: int, workdir: Path, on: bool) -> tuple[float, float | None]:
    """(seconds to ingest `total` events durably, seconds until the summaries hold them)."""
    name = f"agg-{'on' if on else 'off'}-{time.monotonic_ns()}"
    with running_broker("tansu", workdir / name, PARTITIONS) as bootstrap:
        asyncio.run(produce(bootstrap, total, sessions))
        asyncio.run(commit_offsets(bootstrap, dict.fromkeys(range(PARTITIONS), 0)))
        port = free_port()
        data = workdir / f"data-{name}"
        env = worker_env(bootstrap, data, PARTITIONS, KAIZEN_AGGREGATES="1" if on else "0")
        with running_worker(env, workdir / f"{name}.log", web_port=port) as proc:
            t_first = None
            first_done = 0
            deadline = time.monotonic() + 900
            ingest_s = None
            while time.monotonic() < deadline:
                done = scrape(port).get("kaizen_ingest_ingested_total", 0)
                if done and t_first is None:
                    t_first, first_done = time.perf_counter(), done
                if done >= total and t_first is not None:
                    elapsed = time.perf_counter() - t_first
                    rate = (done - first_done) / elapsed if elapsed > 0 else float("inf")
                    ingest_s = total / rate if rate else elapsed
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited; see {workdir / f'{name}.log'}")
                time.sleep(0.05)
            if ingest_s is None:
                raise RuntimeError("worker did not finish")
            if not on:
                return ingest_s, None
            assert t_first is not None
            while time.monotonic() < deadline:
                if summarised(data) >= total:
                    return ingest_s, time.perf_counter() - t_first + (ingest_s - elapsed)
                time.sleep(0.2)
            raise RuntimeError("summaries did not catch up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events, one round")
    parser.add_argument("--events", type=int)
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    total = args.events or (100_000 if args.quick else 400_000)
    total -= total % args.sessions
    rounds = args.rounds or (1 if args.quick else 2)
    workdir = Path(tempfile.mkdtemp(prefix="bench-aggregates-"))
    off: list[float] = []
    on: list[float] = []
    caught: list[float] = []
    try:
        for r in range(rounds):
            off.append(one_run(total, args.sessions, workdir, on=False)[0])
            s, c = one_run(total, args.sessions, workdir, on=True)
            on.append(s)
            caught.append(c or 0.0)
            print(f"round {r + 1}: off {total / off[-1]:,.0f} ev/s, on {total / s:,.0f} ev/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    off_s, on_s = statistics.median(off), statistics.median(on)
    print()
    print(f"{'worker':34} {'seconds':>8} {'events/s':>11}")
    print(f"{'summaries off (baseline)':34} {off_s:8.2f} {total / off_s:11,.0f}")
    print(f"{'summaries on: ingest':34} {on_s:8.2f} {total / on_s:11,.0f}")
    print(f"{'summaries on: all events folded':34} {statistics.median(caught):8.2f}")
    print()
    print(f"ingest with summaries / without: {off_s / on_s:5.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
