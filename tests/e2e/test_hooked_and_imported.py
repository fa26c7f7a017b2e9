"""A Claude Code session both hooked live and imported counts nothing twice (issue 15.1).

Real processes throughout: the installed lean hook command for every hook call, a
`kaizen-stream ship` process (which also reads the transcript the Stop hooks noted: live
token capture), `kaizen-stream import` of the same transcript, a worker, and the
`sessions`, `stats` and `retro` commands. The hooks number their events from 0 and the
transcript's lines get 2**32 + line: two copies of each tool call under other keys, which
the summary must count once (by tool call id), in either order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.hooks.util import (
    ROOT,
    claude_hook_payloads,
    hook_env,
    run_hook,
    sample_claude_session,
)
from tests.ingest.harness import Worker, start_worker
from workers.hooks.redact import Redactor
from workers.importer.transcripts import transcript_events

COUNTS = ("tool_calls", "failures", "errors", "tokens", "cost_usd")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "workers", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def hook_session(transcript: Path, spool: Path, bootstrap: str) -> int:
    """Every hook call of the session, as Claude Code makes them, then one shipper run; the
    number of hook calls."""
    payloads = claude_hook_payloads(transcript)
    for payload in payloads:
        assert run_hook("claude", payload, hook_env(spool)).returncode == 0
    cli("ship", "--spool-dir", str(spool), "--broker", bootstrap, "--give-up", "120")
    return len(payloads)


def import_session(transcript: Path, bootstrap: str) -> None:
    cli("import", str(transcript), "--broker", bootstrap)


def team_row(bootstrap: str, session: str, events: int, worker: Worker) -> dict[str, Any]:
    """The session's row in `sessions --team` once it holds `events` events."""
    deadline = time.monotonic() + 240
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = cli("sessions", "--team", "--broker", bootstrap, "--json", "--limit", "1000")
        rows = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
        row = next((r for r in rows if r["session_id"] == session), {})
        if row.get("events") == events:
            return row
        time.sleep(1)
    pytest.fail(f"{session}: {row} after 240 s, want {events} events\n{worker.log_text()[-3000:]}")


def workspace_stats(bootstrap: str, workspace: str) -> dict[str, Any]:
    out = cli("stats", "--team", "--by", "workspace", "--broker", bootstrap, "--json")
    rows = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    return next(r for r in rows if r["workspace"] == workspace)


def retro_titles(data: Path, session: str) -> list[tuple[str, str]]:
    env = {**os.environ, "KAIZEN_DATA_DIR": str(data), "KAIZEN_PARTITIONS": str(TEST_PARTITIONS)}
    out = cli("retro", session, "--json", env=env)
    found = map(json.loads, out.stdout.splitlines())
    # idle gaps depend on when the hooks ran (now) against the transcript's times: left out
    return sorted((f["rule"], f["title"]) for f in found if f["rule"] != "long-idle-gaps")


def test_hooked_then_imported_and_imported_then_hooked_count_each_call_once(
    broker: Broker, tmp_path: Path, unique: str
) -> None:
    bootstrap = broker.bootstrap
    data = tmp_path / "data"
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "worker.log")
    try:
        first, second = f"hook-first-{unique}", f"import-first-{unique}"
        spaces = {s: f"/srv/{s}/payments-api" for s in (first, second)}
        paths = {s: sample_claude_session(tmp_path / f"{s}.jsonl", s, spaces[s]) for s in spaces}
        lines = {s: list(transcript_events(str(p), Redactor())) for s, p in paths.items()}
        usage = {s: sum(e["kind"] == "cost" for e in evs) for s, evs in lines.items()}
        tokens = sum(
            e.get(k, 0)
            for e in lines[first]
            if e["kind"] == "cost"
            for k in ("tokens_in", "tokens_out", "cache_creation_tokens", "cache_read_tokens")
        )

        # hooked live, then imported
        hooks = hook_session(paths[first], tmp_path / "spool-1", bootstrap)
        hooked = team_row(bootstrap, first, hooks + usage[first], worker)
        hooked_stats = workspace_stats(bootstrap, spaces[first])
        hooked_retro = retro_titles(data, first)
        import_session(paths[first], bootstrap)
        # usage events have one key whoever read them: only the other lines are new
        both = team_row(bootstrap, first, hooks + len(lines[first]), worker)
        both_stats = workspace_stats(bootstrap, spaces[first])
        both_retro = retro_titles(data, first)

        # imported, then hooked live
        import_session(paths[second], bootstrap)
        imported = team_row(bootstrap, second, len(lines[second]), worker)
        hooks2 = hook_session(paths[second], tmp_path / "spool-2", bootstrap)
        both2 = team_row(bootstrap, second, hooks2 + len(lines[second]), worker)
        both2_retro = retro_titles(data, second)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]

    # the hooked-only figures are the session's: 4 calls (Grep, Bash, Edit, Task), the
    # Bash call failed, 2 errors (it and the API error), the sample's tokens
    assert (hooked["tool_calls"], hooked["failures"], hooked["errors"]) == (4, 1, 2)
    assert hooked["tokens"] == tokens > 21 + 507 + 2770 + 51510  # the sample's, and the Task's
    assert hooked["cost_usd"] > 0
    for row in (both, imported, both2):
        assert {k: row[k] for k in COUNTS} == {k: hooked[k] for k in COUNTS}, row
    for k in ("sessions", "tool_calls", "failures", "tokens", "cost_usd"):
        assert both_stats[k] == hooked_stats[k], (k, both_stats, hooked_stats)
    assert hooked_stats["tool_calls"] == 4 and hooked_stats["failures"] == 1
    assert both_retro == both2_retro == hooked_retro
