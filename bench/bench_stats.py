"""`kaizen-stream stats` over many sessions: wall time of the command, and where it goes.

    .venv/bin/python bench/bench_stats.py             # 100k sessions
    .venv/bin/python bench/bench_stats.py --quick     # 20k sessions (`make bench`)

Builds a data dir of 4 partitions holding N session summaries (each with a few
models, days, tools and failures, as the worker writes them: summary, fold
state and stats row in one batch), then times, in the same run:

  raw read                 iterating every summary's bytes in RocksDB (the baseline)
  raw read: rows           the same over the stats rows' bytes
  summaries: read+decode   SummaryStore.read_all (full JSON -> SessionSummary)
  summaries: totals        views.totals_by over them (what stats did before rows)
  rows: read+decode        SummaryStore.read_rows (stats rows -> StatsRow)
  rows: totals             views.totals_of_rows over them, prices from genai-prices
                           (what `stats --since` does)
  rollup: read+price       SummaryStore.read_rollup of every partition, merged and
                           priced (what `stats` without --since does)
  rollup since: read+price SummaryStore.read_rollup_since (day-keyed rollups of the
                           days after since's, plus the rows of since's day), by day,
                           with since mid-day 7 days before the last (what
                           `stats --since` does)
  command                  `kaizen-stream stats --by model` as a process (interpreter
                           start included), `--by day`, and `--by day --since`

Every path's totals are checked equal to the full summaries' (model) or to the
stats rows filtered by last activity (--since).

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

from workers.analytics.aggregate import SessionSummary  # noqa: E402
from workers.analytics.digest import StatsRow  # noqa: E402
from workers.analytics.prices import PriceBook  # noqa: E402
from workers.analytics.store import ROW, ROW_END, SUMMARY, UNPUBLISHED, SummaryStore  # noqa: E402
from workers.analytics.views import (  # noqa: E402
    Rollup,
    Totals,
    active_since,
    price_rollup,
    totals_by,
    totals_of_rows,
)
from workers.settings import EVENTS_TOPIC  # noqa: E402

PARTITIONS = 4
T0 = 1_760_000_000_000
DAYS = 30
# mid-day, 7 days before the last: the day-keyed rollups answer for the later days,
# the rows of that day's sessions for the rest
SINCE = T0 + (DAYS - 7) * 86_400_000 + 43_200_000
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "gpt-5.1-codex", "acme-9000")
TOOLS = ("Bash", "Read", "Edit", "Grep", "Write", "Task")


def summary(i: int, rng: random.Random) -> SessionSummary:
    s = SessionSummary(f"bench-{i:06d}", agent=rng.choice(("claude", "codex", "cursor")))
    s.workspace = f"~/src/project-{rng.randrange(40)}"
    s.host = f"dev-{rng.randrange(25)}"
    t0 = T0 + rng.randrange(DAYS) * 86_400_000
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
    parts: list[list[SessionSummary]] = [[] for _ in range(PARTITIONS)]
    for i in range(sessions):
        parts[i % PARTITIONS].append(summary(i, rng))
    for p, found in enumerate(parts):
        d = data / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        (d / "index").mkdir(parents=True)
        store = SummaryStore.open(d)
        store._db.write(store.batch(found))
        store.close()


def rollup_totals(dirs: list[Path], book: PriceBook) -> dict[str, Totals]:
    rollup = Rollup()
    for d in dirs:
        rollup.add(SummaryStore.read_rollup(d, "model"))
    return price_rollup(rollup, "model", book)


def since_totals(dirs: list[Path], book: PriceBook) -> dict[str, Totals]:
    rollup = Rollup()
    for d in dirs:
        rollup.add(SummaryStore.read_rollup_since(d, "day", SINCE))
    return price_rollup(rollup, "day", book)


def agree(a: dict[str, Totals], b: dict[str, Totals]) -> bool:
    """Equal totals, cost up to float summation order."""
    if a.keys() != b.keys():
        return False
    for g, t in a.items():
        u = b[g]
        if abs(t.cost_usd - u.cost_usd) > 1e-9 * max(abs(t.cost_usd), 1.0):
            return False
        if {**t.to_json(), "cost_usd": 0} != {**u.to_json(), "cost_usd": 0}:
            return False
    return True


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--quick", action="store_true", help="20k sessions (`make bench`)")
    args = parser.parse_args()
    args.sessions = args.sessions or (20_000 if args.quick else 100_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    try:
        build(tmp, args.sessions)
        dirs = [tmp / "hotlog" / f"{EVENTS_TOPIC}-{p}" for p in range(PARTITIONS)]

        def raw(lower: bytes, upper: bytes) -> None:
            for d in dirs:
                store = SummaryStore.open(d, read_only=True)
                sum(len(v) for _, v in store._range(lower, upper))
                store.close()

        loaded: list[SessionSummary] = []
        rows_loaded: list[StatsRow] = []

        def decode() -> None:
            loaded[:] = [s for d in dirs for s in SummaryStore.read_all(d)]

        def decode_rows() -> None:
            rows_loaded[:] = [r for d in dirs for r in SummaryStore.read_rows(d)]

        book = PriceBook()
        rows = [
            ("raw read", timed(lambda: raw(SUMMARY, UNPUBLISHED))),
            ("raw read: rows", timed(lambda: raw(ROW, ROW_END))),
            ("summaries: read+decode", timed(decode)),
            ("summaries: totals", timed(lambda: totals_by(loaded, "model", book))),
            ("rows: read+decode", timed(decode_rows)),
            ("rows: totals", timed(lambda: totals_of_rows(rows_loaded, "model", book))),
        ]
        rows.append(("rollup: read+price", timed(lambda: rollup_totals(dirs, book))))
        rows.append(("rollup since: read+price", timed(lambda: since_totals(dirs, book))))
        paths = (totals_by(loaded, "model", book), totals_of_rows(rows_loaded, "model", book))
        for other in (paths[1], rollup_totals(dirs, book)):
            assert agree(paths[0], other), "the paths disagree"
        active = [r for r in rows_loaded if active_since(r.last_ts, SINCE)]
        want = totals_of_rows(active, "day", book)
        assert agree(want, since_totals(dirs, book)), "the --since paths disagree"
        for by in ("model", "day"):
            argv = [sys.executable, "-m", "workers", "stats", "--by", by, "--data-dir", str(tmp)]
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
            rows.append((f"command: stats --by {by}", time.perf_counter() - t0))
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SINCE / 1000))
        argv = [*argv[:-2], "--since", since, *argv[-2:]]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
        rows.append(("command: stats --since", time.perf_counter() - t0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(f"{args.sessions:,} sessions in {PARTITIONS} partitions")
    print(f"{'step':28} {'seconds':>8} {'x raw read':>10}")
    for name, secs in rows:
        print(f"{name:28} {secs:8.3f} {secs / base:10.1f}")
    worst = max(secs for name, secs in rows if name.startswith("command: stats"))
    print(f"\ncommand over {args.sessions:,} sessions: {worst:.2f} s (goal <= 1 s)")
    print("(--since: day-keyed rollups of the later days + the rows of since's day)")


if __name__ == "__main__":
    main()
