"""Live token capture: hooks note transcripts, the shipper reads them into usage events.

Real files throughout: the installed lean hook command writes the note, a
real spool receives the events, transcripts grow line by line as an agent
writes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.hooks.util import hook_env, run_hook, spooled_fields
from workers.hooks.redact import Redactor
from workers.hooks.spool import Spool
from workers.hooks.usage import (
    USAGE_SEQ_BASE,
    claude_usage,
    codex_state,
    codex_usage,
    note,
    pending_dir,
    usage_seq,
)
from workers.importer.transcripts import transcript_events
from workers.shipper.capture import capture_pending, cursor_dir

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIPTS = ROOT / "workers" / "samples" / "transcripts"
CLAUDE = TRANSCRIPTS / "claude-7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17.jsonl"
CODEX = TRANSCRIPTS / "rollout-2026-11-20T09-14-03-019a7c4e-2b1d-7e90-a5f3-6c8d2e41b7a0.jsonl"
CLAUDE_SESSION = "7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17"
CODEX_SESSION = "019a7c4e-2b1d-7e90-a5f3-6c8d2e41b7a0"
REDACTOR = Redactor(home="/home/dev")


def usage(fields: list[dict[str, Any]]) -> dict[int, tuple[int, ...]]:
    """seq -> (in, out, cache write, cache read) of the cost events."""
    return {
        f["seq"]: (
            f.get("tokens_in", 0),
            f.get("tokens_out", 0),
            f.get("cache_creation_tokens", 0),
            f.get("cache_read_tokens", 0),
        )
        for f in fields
        if f["kind"] == "cost" and f.get("tokens_out") is not None
    }


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def stop(transcript: Path, session: str, event: str = "Stop") -> dict[str, Any]:
    return {
        "hook_event_name": event,
        "session_id": session,
        "transcript_path": str(transcript),
        "cwd": "/home/dev/src/payments-api",
    }


def test_one_event_per_message_id_from_its_last_line() -> None:
    events = claude_usage(lines_of(CLAUDE))
    assert [e["tokens_out"] for e in events] == [96, 140, 210, 61]
    assert len({e["seq"] for e in events}) == 4
    assert all(e["seq"] == usage_seq(json.loads(e["payload"])["message_id"]) for e in events)
    assert all(USAGE_SEQ_BASE <= e["seq"] < 1 << 63 for e in events)


def test_synthetic_and_non_assistant_lines_count_nothing() -> None:
    line = {
        "type": "assistant",
        "sessionId": "s",
        "message": {"id": "m", "model": "<synthetic>", "usage": {"output_tokens": 0}},
    }
    assert claude_usage([line, {"type": "user"}, None, "x"]) == []


def test_codex_counts_the_growth_of_the_totals_and_skips_repeats() -> None:
    lines = lines_of(CODEX)
    token_line = next(i for i, x in enumerate(lines) if x["payload"].get("type") == "token_count")
    lines.insert(token_line + 1, lines[token_line])  # Codex repeats a token_count line
    events = codex_usage(lines, 0, codex_state())
    assert [(e["tokens_in"], e["cache_read_tokens"], e["tokens_out"]) for e in events] == [
        (9120 - 4096, 4096, 310),
        (10760 - 8192, 8192, 392),
    ]


def test_hook_notes_only_turn_closing_events(tmp_path: Path) -> None:
    tool = {"hook_event_name": "PreToolUse", "transcript_path": "/t"}
    assert note("claude", tool, str(tmp_path)) is None
    assert note("cursor", stop(CLAUDE, "s"), str(tmp_path)) is None
    for event in ("Stop", "SubagentStop", "PreCompact", "SessionEnd"):
        assert note("claude", stop(CLAUDE, "s", event), str(tmp_path)) is not None
    notify = {"type": "agent-turn-complete", "thread-id": CODEX_SESSION}
    assert note("codex", notify, str(tmp_path)) is not None
    assert len(list(Path(pending_dir(str(tmp_path))).iterdir())) == 2  # one note per transcript


def test_capture_can_be_turned_off(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("KAIZEN_USAGE_CAPTURE", "0")
    assert note("claude", stop(CLAUDE, "s"), str(tmp_path)) is None


def test_live_capture_reads_each_turn_once(tmp_path: Path) -> None:
    """A transcript growing over three turns: every message counted once, none twice."""
    spool_dir = tmp_path / "spool"
    transcript = tmp_path / "t.jsonl"
    env = hook_env(spool_dir)
    text = CLAUDE.read_bytes().splitlines(keepends=True)
    cuts = [5, 9, len(text)]
    start = 0
    spool = Spool(str(spool_dir))
    for cut in cuts:
        with transcript.open("ab") as f:
            f.writelines(text[start:cut])
        start = cut
        assert run_hook("claude", stop(transcript, CLAUDE_SESSION), env).returncode == 0
        capture_pending(spool, REDACTOR)
        assert not list(Path(pending_dir(str(spool_dir))).iterdir())  # note consumed
    capture_pending(spool, REDACTOR)  # nothing noted: nothing read
    live = [f for f in spooled_fields(spool_dir) if f["kind"] == "cost"]
    assert sorted(f["tokens_out"] for f in live) == sorted([96, 140, 210, 61])
    assert len({f["seq"] for f in live}) == len(live)
    assert all(f["source"] == "tail" and f["session_id"] == CLAUDE_SESSION for f in live)


def test_a_half_written_line_waits_for_its_newline(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    transcript = tmp_path / "t.jsonl"
    data = CLAUDE.read_bytes()
    cut = data.index(b"msg_01Fake0002") + 40  # inside the line of message 2
    transcript.write_bytes(data[:cut])
    spool = Spool(str(spool_dir))
    note("claude", stop(transcript, CLAUDE_SESSION), str(spool_dir))
    capture_pending(spool, REDACTOR)
    assert [f["tokens_out"] for f in spooled_fields(spool_dir)] == [96]
    transcript.write_bytes(data)
    note("claude", stop(transcript, CLAUDE_SESSION), str(spool_dir))
    capture_pending(spool, REDACTOR)
    assert [f["tokens_out"] for f in spooled_fields(spool_dir)] == [96, 140, 210, 61]


def test_crash_before_the_cursor_moves_gives_the_same_keys(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(str(spool_dir))
    note("claude", stop(CLAUDE, CLAUDE_SESSION), str(spool_dir))
    capture_pending(spool, REDACTOR)
    first = usage(spooled_fields(spool_dir))
    # a shipper killed after spooling the events but before writing its cursor:
    shutil.rmtree(cursor_dir(spool))
    note("claude", stop(CLAUDE, CLAUDE_SESSION), str(spool_dir))
    capture_pending(spool, REDACTOR)
    fields = spooled_fields(spool_dir)
    assert len(fields) == 2 * len(first)
    assert usage(fields) == first  # the worker's (session_id, seq) dedupe keeps one each


def test_import_after_live_capture_counts_nothing_twice(tmp_path: Path) -> None:
    for agent, path, notify in (
        ("claude", CLAUDE, stop(CLAUDE, CLAUDE_SESSION)),
        ("codex", CODEX, {**stop(CODEX, CODEX_SESSION), "hook_event_name": "Stop"}),
    ):
        spool_dir = tmp_path / agent
        note(agent, notify, str(spool_dir))
        capture_pending(Spool(str(spool_dir)), REDACTOR)
        live = spooled_fields(spool_dir)
        imported = list(transcript_events(str(path), REDACTOR))
        assert usage(live) == usage(imported), agent  # same keys, same tokens
        keys = {(f["session_id"], f["seq"]) for f in live}
        assert keys <= {(f["session_id"], f["seq"]) for f in imported}


def test_codex_notify_finds_the_rollout_file(tmp_path: Path, monkeypatch: Any) -> None:
    home = tmp_path / "codex"
    day = home / "sessions" / "2026" / "11" / "20"
    day.mkdir(parents=True)
    shutil.copy(CODEX, day / CODEX.name)
    monkeypatch.setenv("CODEX_HOME", str(home))
    spool_dir = tmp_path / "spool"
    env = hook_env(spool_dir, CODEX_HOME=str(home))
    payload = {"type": "agent-turn-complete", "thread-id": CODEX_SESSION, "turn-id": "1"}
    assert run_hook("codex", payload, env, argv_payload=True).returncode == 0
    capture_pending(Spool(str(spool_dir)), REDACTOR)
    costs = [f for f in spooled_fields(spool_dir) if f["kind"] == "cost"]
    assert [f["tokens_out"] for f in costs] == [310, 392]
    assert {f["session_id"] for f in costs} == {CODEX_SESSION}


def test_unreadable_note_is_dropped_with_a_warning(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    Path(pending_dir(spool.path)).mkdir(parents=True)
    (Path(pending_dir(spool.path)) / "bad").write_text("{not json")
    assert capture_pending(spool, REDACTOR) == 0
    assert "unreadable note" in (tmp_path / "warnings.log").read_text()
    assert not list(Path(pending_dir(spool.path)).iterdir())
