"""Importing transcripts: the right events, redacted, and importing twice changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.brokers import Broker
from tests.hooks.util import consume_events
from workers.hooks.redact import Redactor
from workers.hooks.samples import SAMPLES_DIR
from workers.hooks.usage import USAGE_SEQ_BASE
from workers.importer import IMPORT_SEQ_BASE
from workers.importer.transcripts import find_transcripts, transcript_events

TRANSCRIPTS = Path(SAMPLES_DIR) / "transcripts"


def events(name: str) -> list[dict]:
    path = next(p for p in find_transcripts([str(TRANSCRIPTS)]) if name in os.path.basename(p))
    return list(transcript_events(path, Redactor(home="/home/dev")))


def test_claude_transcript() -> None:
    evs = events("claude-")
    lines = [e for e in evs if e["kind"] != "cost"]
    assert [e["seq"] - IMPORT_SEQ_BASE for e in lines] == list(range(len(lines)))
    assert {e["session_id"] for e in evs} == {"7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17"}
    assert all(e["source"] == "import" and e["agent"] == "claude" for e in evs)
    kinds = Counter(e["kind"] for e in evs)
    assert kinds["tool_call"] == 3 and kinds["error"] == 1 and kinds["tool_result"] == 2
    # usage counted once per message id, from its last line, in a usage event keyed by the id
    costs = [e for e in evs if e["kind"] == "cost"]
    assert [e["tokens_out"] for e in costs] == [96, 140, 210, 61]
    assert sum(e.get("tokens_out", 0) for e in evs) == 96 + 140 + 210 + 61
    assert all(e["seq"] >= USAGE_SEQ_BASE for e in costs)
    assert {e.get("model") for e in evs if e["kind"] == "tool_call"} == {
        "claude-sonnet-4-5-20250929"
    }
    assert all(e["workspace"] == "~/src/payments-api" for e in evs)
    text = "".join(e["payload"] for e in evs)
    assert "sk_test_FAKE" not in text and "billing-team@example.com" not in text


def test_codex_transcript() -> None:
    evs = events("rollout-")
    assert {e["session_id"] for e in evs} == {"019a7c4e-2b1d-7e90-a5f3-6c8d2e41b7a0"}
    costs = [e for e in evs if e["kind"] == "cost"]
    # tokens_in excludes cached input; the second line counts the growth of the totals
    assert [(c["tokens_in"], c["cache_read_tokens"]) for c in costs] == [(5024, 4096), (2568, 8192)]
    assert costs[0]["context_max_tokens"] == 272000 and costs[0]["reasoning_tokens"] == 192
    calls = [e for e in evs if e["kind"] == "tool_call"]
    assert [c["tool"] for c in calls] == ["shell", "apply_patch", "shell"]
    assert sum(e["kind"] == "error" for e in evs) == 2  # exit code 1 and the stream error
    assert all(e.get("model") == "gpt-5.1-codex" for e in evs[1:])
    assert "wJalrXUtnFEMI" not in "".join(e["payload"] for e in evs)


def test_import_twice_changes_nothing(tmp_path: Path, broker: Broker, unique: str) -> None:
    # the sample transcripts under a fresh session id, so this test reads only its own events
    src = TRANSCRIPTS / "claude-7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17.jsonl"
    session = f"imp-{unique}"
    copy = tmp_path / f"{session}.jsonl"
    copy.write_text(src.read_text().replace("7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17", session))
    shutil.copy(copy, tmp_path / "again.jsonl")
    env = dict(os.environ, KAIZEN_BROKER=broker.bootstrap)
    for path in (copy, tmp_path / "again.jsonl"):
        proc = subprocess.run(
            [sys.executable, "-m", "workers", "import", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "imported 15 events of 1 sessions" in proc.stdout  # 11 lines, 4 usage events
    got = consume_events(broker.bootstrap, 10**9, timeout=6, sessions={session})
    keys = [(e["session_id"], e["seq"]) for e in got]
    assert len(keys) == 30 and len(set(keys)) == 15  # twice sent, one key each: dedupe keeps 15
    first = {(e["seq"]): e for e in got[:15]}
    second = {(e["seq"]): e for e in got[15:]}
    assert first == second  # byte-for-byte the same events


def test_bad_paths_are_one_line_errors(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "import", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("kaizen-stream: no such file")
