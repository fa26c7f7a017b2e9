"""The team-wide view: workers publish summaries to kaizen.sessions; any client reads them all."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.analytics.test_store import event
from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import end_offsets, produce, start_worker, wait_committed, wait_owned
from workers.codec import batch

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "workers", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in proc.stdout.splitlines()]


def test_two_workers_one_team_view(fresh_broker: Broker, tmp_path: Path) -> None:
    bootstrap = fresh_broker.bootstrap
    counts = {f"team-{s}": 8 + s for s in range(12)}
    messages = [(sid, batch.join([event(sid, q) for q in range(n)])) for sid, n in counts.items()]
    workers = [
        start_worker(bootstrap, tmp_path / f"data{i}", TEST_PARTITIONS, tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    try:
        # both in the group before the events come: no partition (and its hot log) moves later
        wait_owned(workers, TEST_PARTITIONS)
        asyncio.run(produce(bootstrap, messages))
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
        deadline = time.monotonic() + 90
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = cli("sessions", "--team", "--broker", bootstrap, "--limit", "1000")
            if {r["session_id"]: r["events"] for r in rows} == counts:
                break
            time.sleep(1)
        # each worker's own data dir holds only its share; together they hold every session.
        # Read while both run: on Apache Kafka the first worker to stop leaves the group and
        # the other takes its partitions over (tansu keeps a stopped member in the group).
        local = [
            {r["session_id"] for r in cli("sessions", "--data-dir", str(tmp_path / f"data{i}"))}
            for i in range(2)
        ]
        scraped = "".join(w.scrape() for w in workers)
        base = f"http://127.0.0.1:{workers[0].port}"
        with urllib.request.urlopen(f"{base}/team/sessions?sort=tokens&limit=5") as resp:
            web_rows = json.load(resp)
        with urllib.request.urlopen(f"{base}/team/stats?by=agent") as resp:
            web_stats = json.load(resp)
        try:
            urllib.request.urlopen(f"{base}/team/stats?by=colour")
            bad = 200
        except urllib.error.HTTPError as exc:
            bad = exc.code
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.log_text()[-2000:] for w in workers]
    assert {r["session_id"]: r["events"] for r in rows} == counts
    assert all(
        r["tool_calls"] == (n + 3) // 4
        for r, n in zip(
            sorted(rows, key=lambda r: r["session_id"]),
            [counts[k] for k in sorted(counts)],
            strict=True,
        )
    )
    assert local[0] | local[1] == set(counts) and not local[0] & local[1]
    by_model = cli("stats", "--team", "--by", "agent", "--broker", bootstrap)
    assert by_model == [
        {
            "agent": "claude",
            "sessions": 12,
            "events": sum(counts.values()),
            "tokens": 3 * sum(n // 4 for n in counts.values()),
            "cost_usd": by_model[0]["cost_usd"],
            "unpriced_tokens": 0,
            "unpriced_models": [],
            "tool_calls": sum((n + 3) // 4 for n in counts.values()),
            "failures": 0,
            "active_ms": by_model[0]["active_ms"],
        }
    ]
    assert by_model[0]["cost_usd"] > 0
    # /metrics of both workers: the counters by agent and model add up to the same totals
    model = 'agent="claude",model="claude-sonnet-4-5-20250929"'
    calls = [x for x in scraped.splitlines() if x.startswith(f"kaizen_tool_calls_total{{{model}}}")]
    assert sum(int(x.rsplit(" ", 1)[1]) for x in calls) == by_model[0]["tool_calls"]
    assert f'kaizen_tokens_total{{{model},kind="out"}}' in scraped
    # the same team view over HTTP, from either worker
    assert web_rows["count"] == 5 and web_rows["truncated"]
    tokens = [r["tokens"] for r in web_rows["sessions"]]
    assert tokens == sorted(tokens, reverse=True) and tokens[0] == 3 * (max(counts.values()) // 4)
    assert web_stats["groups"]["claude"]["sessions"] == 12
    assert bad == 400
