"""SessionSummary: counts from the bundled samples and synthetic sessions; idempotent,
order-free, mergeable; tokens equal to ccusage's figures for the sample transcripts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.hooks.util import claude_hook_payloads, sample_claude_session, spooled_fields
from workers.analytics.aggregate import IDLE_MS, SessionSummary, fold_all
from workers.hooks.hook import record
from workers.hooks.redact import Redactor
from workers.hooks.samples import sample_events
from workers.hooks.spool import Spool
from workers.hooks.usage import note
from workers.importer.transcripts import find_transcripts, transcript_events
from workers.shipper.capture import capture_pending

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIPTS = ROOT / "workers" / "samples" / "transcripts"
CLAUDE = "7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17"
CODEX = "019a7c4e-2b1d-7e90-a5f3-6c8d2e41b7a0"
REDACTOR = Redactor(home="/home/dev")


def imported() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in find_transcripts([str(TRANSCRIPTS)]):
        out += transcript_events(path, REDACTOR)
    return out


def ev(seq: int, ts: int, kind: str = "message", **kw: Any) -> dict[str, Any]:
    return {"session_id": "s", "seq": seq, "ts_ms": ts, "kind": kind, **kw}


def test_hook_samples() -> None:
    by = fold_all(sample_events())
    claude = by[CLAUDE]
    assert claude.agent == "claude"
    assert claude.tool_calls == {"Grep": 1, "Read": 1, "Bash": 2, "Edit": 1, "Task": 1, "Write": 1}
    assert claude.tool_failures == {"Bash": 1}
    assert claude.errors == 2  # the failed Bash call and the StopFailure
    assert (claude.subagents, claude.compactions, claude.permission_requests) == (1, 1, 1)
    assert claude.event_count == 28 and claude.first_ts is not None
    assert claude.total_tokens == 0  # hooks carry no tokens: they come from usage events
    assert by[CODEX].permission_requests == 1


def test_tokens_equal_ccusage_on_the_sample_transcripts() -> None:
    # ccusage 20.0.24 `session --offline --json` on the same files (bench/compare_ccusage.py)
    by = fold_all(imported())
    t = by[CLAUDE].tokens
    assert (t["in"], t["out"], t["cache_write"], t["cache_read"]) == (21, 507, 2770, 51510)
    t = by[CODEX].tokens
    assert (t["in"], t["out"], t.get("cache_write", 0), t["cache_read"]) == (7592, 702, 0, 12288)
    assert by[CODEX].context_peak == 10760 and by[CODEX].context_max == 272000


def test_live_capture_and_import_together_count_once(tmp_path: Path) -> None:
    path = next(p for p in find_transcripts([str(TRANSCRIPTS)]) if CLAUDE in p)
    note(
        "claude",
        {"hook_event_name": "Stop", "transcript_path": path, "session_id": CLAUDE},
        str(tmp_path),
    )
    capture_pending(Spool(str(tmp_path)), REDACTOR)
    live = spooled_fields(tmp_path)
    both = fold_all(live + imported())[CLAUDE]
    assert both.tokens == fold_all(imported())[CLAUDE].tokens


def comparable(s: SessionSummary) -> dict[str, Any]:
    return s.to_dict()  # the fold state included: which calls were seen does not depend on order


@pytest.mark.parametrize("source", ["hooks", "import", "both"])
def test_idempotent_and_order_free(source: str) -> None:
    # both: the Codex sample's hooks and rollout describe the same tool calls (one call id,
    # tool "Bash" in the hooks and "shell" in the rollout), so each copy must count once
    events = {"hooks": sample_events(), "import": imported(), "both": sample_events() + imported()}[
        source
    ]
    once = fold_all(events)
    twice = fold_all(events + events)
    assert {k: v.to_dict() for k, v in once.items()} == {k: v.to_dict() for k, v in twice.items()}
    for seed in range(5):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        again = fold_all(shuffled)
        assert {k: comparable(v) for k, v in once.items()} == {
            k: comparable(v) for k, v in again.items()
        }


def test_merge_of_disjoint_halves_is_the_whole_and_overlap_is_refused() -> None:
    events = [e for e in sample_events() if e["session_id"] == CLAUDE]
    whole = fold_all(events)[CLAUDE]
    a = fold_all(events[::2])[CLAUDE]
    b = fold_all(events[1::2])[CLAUDE]
    assert comparable(a.merge(b)) == comparable(whole)
    with pytest.raises(ValueError, match="share seqs"):
        a.merge(fold_all(events[:3])[CLAUDE])


def test_merge_refuses_a_tool_call_both_counted_and_joins_its_copies() -> None:
    codex = [e for e in sample_events() + imported() if e["session_id"] == CODEX]
    whole = fold_all(codex)[CODEX]
    hooks = fold_all([e for e in codex if e.get("source") != "import"])[CODEX]
    lines = fold_all([e for e in codex if e.get("source") == "import"])[CODEX]
    with pytest.raises(ValueError, match="share tool call"):
        hooks.merge(lines)  # each counted call_01..03: a sum would count them twice
    # calls in one half, results (and everything else) in the other: the copies join
    calls = [e for e in codex if e.get("kind") == "tool_call"]
    rest = [e for e in codex if e.get("kind") != "tool_call"]
    joined = fold_all(calls)[CODEX].merge(fold_all(rest)[CODEX])
    assert comparable(joined) == comparable(whole)
    assert comparable(fold_all(rest)[CODEX].merge(fold_all(calls)[CODEX])) == comparable(whole)


def hooked_and_imported(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(hook events with live usage, transcript events) of one Claude Code session: the
    sample transcript with a subagent and an API error (`sample_claude_session`); the hook
    side is what Claude Code's hooks send for it (real redaction, mapping and spool), plus
    live capture's usage events from its Stop hooks."""
    path = sample_claude_session(tmp_path / "hooked-and-imported.jsonl", "hooked-and-imported")
    spool = Spool(str(tmp_path / "spool"))
    for payload in claude_hook_payloads(path):
        record("claude", payload, spool, REDACTOR)
        note("claude", payload, spool.path)
    capture_pending(spool, REDACTOR)
    return spooled_fields(tmp_path / "spool"), list(transcript_events(str(path), REDACTOR))


def test_a_session_hooked_and_imported_counts_each_tool_call_once(tmp_path: Path) -> None:
    hooks, lines = hooked_and_imported(tmp_path)
    sid = "hooked-and-imported"
    hooked = fold_all(hooks)[sid]
    only_import = fold_all(lines)[sid]
    assert hooked.tool_calls == {"Grep": 1, "Bash": 1, "Edit": 1, "Task": 1}
    assert hooked.tool_failures == {"Bash": 1}
    assert (hooked.errors, hooked.subagents, hooked.compactions) == (2, 1, 1)
    for seed in range(6):  # hooks first, import first, interleaved
        events = hooks + lines
        if seed == 1:
            events = lines + hooks
        elif seed > 1:
            random.Random(seed).shuffle(events)
        both = fold_all(events)[sid]
        for s in (both, only_import):
            assert s.tool_calls == hooked.tool_calls
            assert s.tool_failures == hooked.tool_failures
            assert (s.errors, s.subagents, s.compactions) == (2, 1, 1)
            assert s.tokens == hooked.tokens and s.total_tokens > 0
        assert both.permission_denials == hooked.permission_denials
        # both copies of a tool call are stored and replayed; usage events share their key
        assert both.event_count == len({e["seq"] for e in hooks + lines})


def test_a_call_one_copy_reports_failed_is_failed_and_named_by_the_hook() -> None:
    hook = {"source": "hook", "tool_call_id": "c1", "tool": "Bash"}
    line = {"source": "import", "tool_call_id": "c1"}
    events = [
        ev(0, 1, "tool_call", **hook),
        ev(1, 2, "tool_result", **hook),  # the hook saw a result...
        ev(2**32, 1, "tool_call", **{**line, "tool": "shell"}),
        ev(2**32 + 1, 2, "error", **line),  # ...the transcript says it failed
    ]
    for order in (events, events[::-1], events[2:] + events[:2]):
        s = fold_all(order)["s"]
        assert (s.tool_calls, s.tool_failures, s.errors) == ({"Bash": 1}, {"Bash": 1}, 1)


def test_active_time_excludes_idle_gaps() -> None:
    m = 60_000
    s = SessionSummary("s")
    t0 = 1_700_000_000_000
    for seq, t in enumerate([0, 1 * m, 2 * m, 20 * m, 21 * m]):
        s.fold(ev(seq, t0 + t))
    assert s.active_ms == 3 * m
    assert s.idle_gaps == [(t0 + 2 * m, t0 + 20 * m)]
    s.fold(ev(9, t0 + 11 * m))  # a late event in the gap: 2m..11m is 9 min > IDLE, still idle
    assert s.active_ms == 3 * m and len(s.idle_gaps) == 2
    assert 5 * m == IDLE_MS


def test_tokens_only_from_cost_events_and_cost_inputs_by_model_and_day() -> None:
    s = SessionSummary("s")
    s.fold(ev(0, 1_700_000_000_000, "message", tokens_out=999))  # not a usage event
    s.fold(
        ev(
            1,
            1_700_000_000_000,
            "cost",
            model="m",
            tokens_in=1,
            tokens_out=2,
            cache_creation_tokens=3,
            cache_read_tokens=250_000,
        )
    )
    assert s.tokens == {"in": 1, "out": 2, "cache_write": 3, "cache_read": 250_000}
    assert s.usage == {"m\t2023-11-14\tL": [1, 2, 3, 250_000]}


def test_tool_failure_found_through_the_call_id() -> None:
    s = SessionSummary("s")
    s.fold(ev(0, 1, "tool_call", tool="Bash", tool_call_id="c1"))
    s.fold(ev(1, 2, "error", tool_call_id="c1", payload='{"is_error":true}'))
    s.fold(ev(2, 3, "error", payload="{}"))  # an error that is no tool's
    assert s.tool_failures == {"Bash": 1} and s.errors == 2


def test_permission_denial() -> None:
    s = SessionSummary("s")
    s.fold(
        ev(0, 1, "tool_result", payload='"The user doesn\'t want to proceed with this tool use."')
    )
    s.fold(ev(1, 2, "tool_result", payload='{"ok":true}'))
    assert s.permission_denials == 1


def test_bytes_round_trip() -> None:
    s = fold_all(sample_events() + imported())[CLAUDE]
    assert SessionSummary.from_bytes(s.to_bytes()) == s


def test_two_producers_of_one_session_both_count_and_resends_do_not() -> None:
    """Two spools number one session from 0 (issue 12.2): keyed by (producer, seq), both
    machines' events count; a resend of either changes nothing; merge keeps them apart."""

    def ev(producer: str, seq: int) -> dict[str, Any]:
        return {"session_id": "s", "seq": seq, "producer": producer, "ts_ms": 1000 + seq}

    events = [ev(p, q) for p in ("", "a", "b") for q in range(5)]
    whole = SessionSummary("s")
    assert all(whole.fold(e) for e in events)
    assert not any(whole.fold(e) for e in events)  # resends
    assert whole.event_count == 15
    a, b = SessionSummary("s"), SessionSummary("s")
    for e in events:
        (a if e["producer"] == "a" else b).fold(e)
    assert a.merge(b).to_dict() == b.merge(a).to_dict()
    assert a.merge(b).event_count == 15 and a.merge(b).produced == whole.produced
    with pytest.raises(ValueError):
        a.merge(a)
