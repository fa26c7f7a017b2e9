"""Retro rules: each triggered by a synthetic session built for it, and not by a near miss;
the bundled samples give the findings they should."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from workers.analytics import retro as r
from workers.analytics.aggregate import SessionSummary
from workers.analytics.views import timeline
from workers.hooks.redact import Redactor
from workers.hooks.samples import sample_events
from workers.importer.transcripts import find_transcripts, transcript_events

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_760_000_000_000


class Session:
    """A synthetic session written the way Claude Code hooks map (PreToolUse/PostToolUse)."""

    def __init__(self, sid: str = "syn") -> None:
        self.sid = sid
        self.events: list[dict[str, Any]] = []
        self.ts = T0

    def add(self, kind: str, dt_s: float = 10, **kw: Any) -> dict[str, Any]:
        self.ts += int(dt_s * 1000)
        payload = kw.pop("payload", {})
        e = {
            "session_id": self.sid,
            "seq": len(self.events),
            "ts_ms": self.ts,
            "kind": kind,
            "payload": json.dumps(payload, separators=(",", ":")),
            **kw,
        }
        self.events.append(e)
        return e

    def shell(self, command: str, ok: bool, dt_s: float = 10) -> None:
        cid = f"c{len(self.events)}"
        self.add(
            "tool_call",
            dt_s,
            tool="Bash",
            tool_call_id=cid,
            payload={"hook_event_name": "PreToolUse", "tool_input": {"command": command}},
        )
        if ok:
            self.add("tool_result", tool="Bash", tool_call_id=cid, payload={"exit_code": 0})
        else:
            self.add(
                "error",
                tool="Bash",
                tool_call_id=cid,
                payload={"hook_event_name": "PostToolUseFailure", "error": "exit 1"},
            )

    def edit(self) -> None:
        cid = f"c{len(self.events)}"
        self.add("tool_call", tool="Edit", tool_call_id=cid)
        self.add("tool_result", tool="Edit", tool_call_id=cid)

    def usage(
        self, prompt: int, model: str = "claude-sonnet-4-5-20250929", dt_s: float = 5
    ) -> None:
        self.add("cost", dt_s, model=model, tokens_in=10, tokens_out=100, cache_read_tokens=prompt)

    def findings(self, ctx: r.Context | None = None) -> dict[str, list[r.Finding]]:
        out: dict[str, list[r.Finding]] = defaultdict(list)
        for f in r.retro(self.events, ctx=ctx):
            out[f.rule].append(f)
        return out


def test_repeated_failing_command() -> None:
    s = Session()
    for _ in range(3):
        s.shell("npm run build", ok=False)
    s.shell("ls", ok=True)
    f = s.findings()["repeated-failing-command"]
    assert len(f) == 1 and "failed 3 times" in f[0].title
    assert (f[0].first_seq, f[0].last_seq) == (0, 5)
    near = Session()
    near.shell("npm run build", ok=False)
    near.shell("npm  run build", ok=False)  # same command, other spacing: counted together
    near.shell("npm run lint", ok=False)
    assert "repeated-failing-command" not in near.findings()


def transcript_copies(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines `import` gives the same tool calls: other seqs, source import, the call's
    input in a tool_use block, results naming no tool (Claude Code transcripts)."""
    out = []
    for i, e in enumerate(events):
        if e["kind"] not in ("tool_call", "tool_result", "error"):
            continue
        copy = {**e, "seq": 2**32 + i, "source": "import", "ts_ms": e["ts_ms"] + 3}
        if e["kind"] == "tool_call":
            tool_input = json.loads(e["payload"]).get("tool_input", {})
            block = {"type": "tool_use", "id": e["tool_call_id"], "input": tool_input}
            copy["payload"] = json.dumps({"message": {"content": [block]}})
        else:
            del copy["tool"]
            copy["payload"] = json.dumps({"is_error": e["kind"] == "error"})
        out.append(copy)
    return out


def test_a_session_hooked_and_imported_is_looked_at_once() -> None:
    s = Session()
    for _ in range(3):
        s.edit()
        s.shell("pytest tests/test_refund.py", ok=False)
    hooked = {k: [f.title for f in v] for k, v in s.findings().items()}
    assert hooked["repeated-failing-command"] == ["`pytest tests/test_refund.py` failed 3 times"]
    assert hooked["edit-test-loop"] == ["3 edit-then-failing-test rounds without a passing run"]
    assert hooked["tool-errors"] == ["Bash: 3 of 3 calls failed (100%)"]
    copies = transcript_copies(s.events)
    for events in (s.events + copies, copies + s.events):
        both = {k: [f.title for f in v] for k, v in _findings(events).items()}
        assert both == hooked
        items = timeline(events)
        assert [i["tool"] for i in items if i["kind"] == "tool_call"] == ["Edit", "Bash"] * 3
        assert len(items) == 6 and sum(i["error"] for i in items) == 3


def _findings(events: list[dict[str, Any]]) -> dict[str, list[r.Finding]]:
    out: dict[str, list[r.Finding]] = defaultdict(list)
    for f in r.retro(events):
        out[f.rule].append(f)
    return out


def test_edit_test_loop() -> None:
    s = Session()
    for _ in range(3):
        s.edit()
        s.shell("pytest tests/test_refund.py", ok=False)
    f = s.findings()["edit-test-loop"]
    assert len(f) == 1 and f[0].title.startswith("3 edit-then-failing-test rounds")
    converged = Session()
    for _ in range(3):
        converged.edit()
        converged.shell("pytest tests/test_refund.py", ok=False)
    converged.edit()
    converged.shell("pytest tests/test_refund.py", ok=True)
    assert "edit-test-loop" not in converged.findings()


def test_tool_errors_by_tool() -> None:
    s = Session()
    for i in range(3):
        s.shell(f"cmd{i}", ok=False)
    f = s.findings()["tool-errors"]
    assert [x.title for x in f] == ["Bash: 3 of 3 calls failed (100%)"]
    ok = Session()
    ok.shell("a", ok=False)
    for i in range(9):
        ok.shell(f"b{i}", ok=True)
    assert "tool-errors" not in ok.findings()


def test_context_pressure_and_compaction() -> None:
    s = Session()
    s.usage(120_000)
    s.usage(185_000)
    f = s.findings()["context-pressure"]
    assert len(f) == 1 and "(93%)" in f[0].title and f[0].first_seq == 1
    compacted = Session()
    compacted.usage(50_000)
    compacted.add("lifecycle", payload={"hook_event_name": "PreCompact"})
    assert "1 compaction(s)" in compacted.findings()["context-pressure"][0].title
    roomy = Session()
    roomy.usage(150_000)
    assert "context-pressure" not in roomy.findings()


def test_cost_far_above_the_team_median_for_the_model() -> None:
    s = Session()
    s.usage(1000)
    peers = {"claude-sonnet-4-5-20250929": [1.0, 1.2, 0.8, 1.1, 0.9]}
    f = s.findings(r.Context(peers, session_cost=4.0))["cost-outlier"]
    assert len(f) == 1 and "4.0x the team median $1.00" in f[0].title
    assert "cost-outlier" not in s.findings(r.Context(peers, session_cost=2.5))
    assert "cost-outlier" not in s.findings(r.Context({"other": [1.0] * 5}, session_cost=9.0))
    assert "cost-outlier" not in s.findings(r.Context({k: v[:3] for k, v in peers.items()}, 9.0))


def test_long_idle_gaps() -> None:
    s = Session()
    s.shell("a", ok=True)
    s.shell("b", ok=True, dt_s=45 * 60)
    f = s.findings()["long-idle-gaps"]
    assert len(f) == 1 and f[0].details == ("45 min idle after seq 1",)
    assert (f[0].first_seq, f[0].last_seq) == (1, 2)
    busy = Session()
    busy.shell("a", ok=True)
    busy.shell("b", ok=True, dt_s=29 * 60)
    assert "long-idle-gaps" not in busy.findings()


def test_permission_denials() -> None:
    s = Session()
    s.add("tool_call", tool="Bash", tool_call_id="x")
    s.add(
        "tool_result",
        tool_call_id="x",
        payload={"content": "The user doesn't want to proceed with this tool use."},
    )
    f = s.findings()["permission-friction"]
    assert len(f) == 1 and f[0].title.startswith("1 permission denial(s)")
    asked = Session()
    for _ in range(4):
        asked.add("hook", payload={"hook_event_name": "PermissionRequest"})
    assert "permission-friction" not in asked.findings()
    asked.add("hook", payload={"hook_event_name": "PermissionRequest"})
    assert "5 permission prompt(s)" in asked.findings()["permission-friction"][0].title


def test_bundled_samples() -> None:
    imported: list[dict[str, Any]] = []
    for path in find_transcripts([str(ROOT / "workers" / "samples" / "transcripts")]):
        imported += transcript_events(path, Redactor(home="/home/dev"))

    def found(events: list[dict[str, Any]]) -> dict[str, list[str]]:
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            by[e["session_id"]].append(e)
        return {sid: sorted(f.rule for f in r.retro(evs)) for sid, evs in by.items()}

    # (one source at a time: the hook samples run on a made-up clock)
    # the Claude sample compacts once; the others are short and healthy
    assert found(sample_events()) == {
        "7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17": ["context-pressure"],
        "b8d1e4f2-3a6c-4f0e-9d27-51c8a0e6f3b9": [],
        "019a7c4e-2b1d-7e90-a5f3-6c8d2e41b7a0": [],
    }
    assert found(imported) == {
        "7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17": ["context-pressure"],
        "019a7c4e-2b1d-7e90-a5f3-6c8d2e41b7a0": [],
    }


def test_rules_take_odd_events() -> None:
    odd = [{"session_id": "o", "seq": 0, "kind": "tool_call", "tool": "Bash", "payload": "nope"}]
    assert r.retro(odd) == []
    assert r.retro([]) == []
    assert (
        r.command_of({"payload": '{"payload":{"arguments":"{\\"command\\":[\\"ls\\",\\"-l\\"]}"}}'})
        == "ls -l"
    )
    assert isinstance(SessionSummary("o"), SessionSummary)
