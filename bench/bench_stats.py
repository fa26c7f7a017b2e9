"""`kaizen-stream stats` over many sessions: wall time of the command, and where it goes.

    .venv/bin/python bench/bench_stats.py             # 100k sessions
    .venv/bin/python bench/bench_stats.py --sessions 20000

Builds a data dir of 4 partitions holding N session summaries (each with a few
models, days, tools and failures, as the worker writes them), then times, in
the same run:

  raw read        iterating every summary's bytes in RocksDB (the I/O floor)
  read + decode   SummaryStore.read_all (JSON -> SessionSummary)
  totals          views.totals_by over them, prices from genai-prices
  command         `kaizen-stream stats --by model` as a process (interpreter start
                  included), and `--by day`

Goal: the command over 100k sessions <= 1 s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rocksdict import WriteBatch  # noqa: E402

from workers.analytics.aggregate import SessionSummary  # noqa: E402
from workers.analytics.prices import PriceBook  # noqa: E402
from workers.analytics.store import SUMMARY, SummaryStore  # noqa: E402
from workers.analytics.views import totals_by  # noqa: E402
from workers.settings import EVENTS_TOPIC  # noqa: E402

PARTITIONS = 4
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "gpt-5.1-codex", "acme-9000")
TOOLS = ("Bash", "Read", "Edit", "Grep", "Write", "Task")


def summary(i: int, rng: random.Random) -> SessionSummary:
    s = SessionSummary(f"bench-{i:06d}", agent=rng.choice(("claude", "codex", "cursor")))
    s.workspace = f"~/src/project-{rng.randrange(40)}"
    s.host = f"dev-{rng.randrange(25)}"
    t0 = 1_760_000_000_000 + rng.randrange(30) * 86_400_000
    s.first_ts, s.last_ts = t0, t0 + rng.randrange(3_600_000)
    s.active = [[s.first_ts, s.last_ts]]
    n = rng.randrange(20, 400)
    s.events = {"tool_call": n // 3, "tool_result": n // 3, "message": n // 6, "cost": n // 6}
    for model in rng.sample(MODELS, rng.randrange(1, 3)):
        for d in range(rng.randrange(1, 3)):
            day = time.strftime("%Y-%m-%d", time.gmtime(t0 / 1000 + d * 86_400))
            s.usage[f"{model}\t{day}\tS"] = [rng.randrange(10_000) for _ in range(4)]
    s.tokens = {"in": 1, "out": 1}
    s.tool_calls = {t: rng.randrange(1, 30) for t in rng.sample(TOOLS, 3)}
    s.tool_failures = {next(iter(s.tool_calls)): rng.randrange(3)}
    s.seqs = [[0, n]]
    return s


def build(data: Path, sessions: int) -> None:
    rng = random.Random(5)
    stores = []
    for p in range(PARTITIONS):
        d = data / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        (d / "index").mkdir(parents=True)
        stores.append(SummaryStore.open(d))
    batches = [WriteBatch(raw_mode=True) for _ in stores]
    for i in range(sessions):
        s = summary(i, rng)
        batches[i % PARTITIONS].put(SUMMARY + s.session_id.encode(), s.split_bytes()[0])
    for store, wb in zip(stores, batches, strict=True):
        store._db.write(wb)
        store.close()


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    try:
        build(tmp, args.sessions)
        dirs = [tmp / "hotlog" / f"{EVENTS_TOPIC}-{p}" for p in range(PARTITIONS)]

        def raw() -> None:
            for d in dirs:
                store = SummaryStore.open(d, read_only=True)
                sum(len(v) for _, v in store._range(SUMMARY, b"\x02"))
                store.close()

        loaded: list[SessionSummary] = []

        def decode() -> None:
            loaded[:] = [s for d in dirs for s in SummaryStore.read_all(d)]

        book = PriceBook()
        rows = [
            ("raw read", timed(raw)),
            ("read + decode", timed(decode)),
            ("totals by model", timed(lambda: totals_by(loaded, "model", book))),
        ]
        for by in ("model", "day"):
            argv = [sys.executable, "-m", "workers", "stats", "--by", by, "--data-dir", str(tmp)]
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
            rows.append((f"command: stats --by {by}", time.perf_counter() - t0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(f"{args.sessions:,} sessions in {PARTITIONS} partitions")
    print(f"{'step':28} {'seconds':>8} {'x raw read':>10}")
    for name, secs in rows:
        print(f"{name:28} {secs:8.3f} {secs / base:10.1f}")
    worst = max(secs for name, secs in rows if name.startswith("command"))
    print(f"\ncommand over {args.sessions:,} sessions: {worst:.2f} s (goal <= 1 s)")


if __name__ == "__main__":
    main()
