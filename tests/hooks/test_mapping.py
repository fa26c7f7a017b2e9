"""The bundled sample sessions map to the right kinds and fields, through the real hook."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.hooks.util import hook_env, run_hook, spooled_fields
from workers.codec.event import complete_event, encode_event
from workers.hooks.mapping import map_payload
from workers.hooks.redact import Redactor
from workers.hooks.samples import sample_events, sample_fields, sample_payloads


def kinds(agent: str) -> list[str]:
    return [f["kind"] for f in sample_fields() if f["agent"] == agent]


def test_sample_events_are_complete_and_encodable() -> None:
    events = sample_events()
    assert {e["agent"] for e in events} == {"claude", "cursor", "codex"}
    for e in events:
        encode_event(e)
    by_session = Counter(e["session_id"] for e in events)
    assert len(by_session) == 3 and all(15 <= n <= 40 for n in by_session.values())
    for session in by_session:
        seqs = [e["seq"] for e in events if e["session_id"] == session]
        assert seqs == list(range(len(seqs)))
    assert sample_events() == events  # deterministic


def test_claude_kinds_and_fields() -> None:
    fields = [f for f in sample_fields() if f["agent"] == "claude"]
    by_event = {json.loads(f["payload"])["hook_event_name"]: f for f in fields}
    assert by_event["SessionStart"]["kind"] == "lifecycle"
    assert by_event["SessionStart"]["model"] == "claude-sonnet-4-5-20250929"
    assert by_event["UserPromptSubmit"]["kind"] == "message"
    pre = by_event["PreToolUse"]
    assert pre["kind"] == "tool_call" and pre["tool"] and pre["tool_call_id"].startswith("toolu_")
    post = by_event["PostToolUse"]
    assert post["kind"] == "tool_result" and "tool_response" in json.loads(post["payload"])
    fail = by_event["PostToolUseFailure"]
    assert fail["kind"] == "error" and fail["tool"] == "Bash"
    assert by_event["StopFailure"]["kind"] == "error"
    assert by_event["StopFailure"]["stop_reason"] == "rate_limit"
    assert by_event["PermissionRequest"]["kind"] == "hook"
    assert by_event["Notification"]["kind"] == "hook"
    for name in ("PreCompact", "PostCompact", "Stop", "SubagentStart", "SubagentStop"):
        assert by_event[name]["kind"] == "lifecycle"
    assert by_event["SessionEnd"]["stop_reason"] == "prompt_input_exit"
    assert all(f["workspace"] == "~/src/payments-api" for f in fields)
    # a tool call and its result share the id
    calls = {f["tool_call_id"] for f in fields if f["kind"] == "tool_call"}
    results = {f["tool_call_id"] for f in fields if f["kind"] in ("tool_result", "error")}
    assert calls - {None} >= results - {None}


def test_cursor_kinds_and_fields() -> None:
    fields = [f for f in sample_fields() if f["agent"] == "cursor"]
    by_event: dict[str, list[dict]] = {}
    for f in fields:
        by_event.setdefault(json.loads(f["payload"])["hook_event_name"], []).append(f)
    assert by_event["beforeSubmitPrompt"][0]["kind"] == "message"
    shell = by_event["beforeShellExecution"][0]
    assert shell["kind"] == "tool_call" and shell["tool"] == "Shell"
    after = by_event["afterShellExecution"][0]
    assert after["kind"] == "tool_result" and after["latency_ms"] == 38
    assert by_event["beforeMCPExecution"][0]["tool"] == "linear_get_issue"
    assert by_event["afterFileEdit"][0]["tool"] == "Edit"
    assert by_event["beforeReadFile"][0]["tool"] == "Read"
    assert [f["kind"] for f in by_event["stop"]] == ["lifecycle", "error"]
    assert all(f["model"] == "claude-4.5-sonnet" for f in fields)
    assert all(f["workspace"] == "~/src/web-dashboard" for f in fields)
    assert all("dev@example.com" not in f["payload"] for f in fields)


def test_codex_hooks_and_notify() -> None:
    fields = [f for f in sample_fields() if f["agent"] == "codex"]
    assert len({f["session_id"] for f in fields}) == 1
    assert all(f["model"] == "gpt-5.1-codex" for f in fields if '"hook_event_name"' in f["payload"])
    notify = [f for f in fields if '"agent-turn-complete"' in f["payload"]]
    assert len(notify) == 2 and all(f["kind"] == "message" for f in notify)
    assert Counter(kinds("codex"))["tool_call"] == 6
    assert any(f["kind"] == "error" for f in fields)


def test_a_command_that_exited_non_zero_is_an_error(tmp_path: Path) -> None:
    # the Codex sample's failing pytest run: PostToolUse with exit_code 1 (its rollout line
    # says the same, so hooks and import agree on the failure)
    codex = [f for f in sample_fields() if f["agent"] == "codex"]
    failed = [f for f in codex if f.get("tool_call_id") == "call_03k3N8pQ2vX7aL"]
    assert [f["kind"] for f in failed] == ["tool_call", "error"]
    shell = {"conversation_id": "c", "command": "npm test", "output": "1 failed"}
    cases = [
        ("cursor", {**shell, "hook_event_name": "afterShellExecution", "exit_code": 1}, "error"),
        ("cursor", {**shell, "hook_event_name": "afterShellExecution", "exitCode": 2}, "error"),
        ("cursor", {**shell, "hook_event_name": "afterShellExecution", "exit_code": 0}, None),
        ("cursor", {**shell, "hook_event_name": "afterShellExecution"}, None),  # none given
        ("cursor", {**shell, "hook_event_name": "afterShellExecution", "exit_code": True}, None),
        ("cursor", {**shell, "hook_event_name": "beforeShellExecution", "exit_code": 1}, None),
        ("cursor", {"hook_event_name": "postToolUse", "tool_output": {"exit_code": 127}}, "error"),
        (
            "claude",
            {"hook_event_name": "PostToolUse", "tool_response": {"exit_code": 1}},
            "error",
        ),
        ("claude", {"hook_event_name": "PostToolUse", "tool_response": {"stdout": ""}}, None),
    ]
    spool = tmp_path / "spool"
    for agent, payload, _kind in cases:
        assert run_hook(agent, {"session_id": "s", **payload}, hook_env(spool)).returncode == 0
    got = [f["kind"] for f in spooled_fields(spool)]
    defaults = {"afterShellExecution": "tool_result", "beforeShellExecution": "tool_call"}
    want = [k or defaults.get(p["hook_event_name"], "tool_result") for _a, p, k in cases]
    assert got == want


@pytest.mark.parametrize("agent", ["claude", "cursor", "codex"])
def test_unknown_events_are_kept(agent: str) -> None:
    r = Redactor(home="/home/dev")
    f = map_payload(agent, r.obj({"hook_event_name": "SomethingNew", "session_id": "s"}), 1, None)
    assert f["kind"] == "hook"
    complete_event({**f, "seq": 0})
    g = map_payload(agent, "not an object", 1, None)
    assert g["kind"] == "hook" and g["session_id"].startswith(f"unknown-{agent}-")


def test_real_hook_process_spools_every_sample_line(tmp_path: Path) -> None:
    env = hook_env(tmp_path / "spool")
    for agent in ("claude", "cursor", "codex"):
        for payload in sample_payloads(agent):
            notify = "type" in payload and "hook_event_name" not in payload
            proc = run_hook(agent, payload, env, argv_payload=notify)
            assert proc.returncode == 0
            if agent == "cursor" and payload["hook_event_name"] == "beforeSubmitPrompt":
                assert json.loads(proc.stdout) == {"continue": True}
            else:
                assert proc.stdout == b""
    spooled = spooled_fields(tmp_path / "spool")
    assert len(spooled) == len(sample_fields())
    expected = Counter((f["agent"], f["kind"], f["session_id"], f["seq"]) for f in sample_fields())
    got = Counter((f["agent"], f["kind"], f["session_id"], f["seq"]) for f in spooled)
    assert got == expected
    assert not (tmp_path / "spool" / "warnings.log").exists()


def test_bad_input_still_exits_zero(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.hooks.util import ENTRY

    env = hook_env(tmp_path / "spool")
    for data in (b"", b"not json {", b"[1,2]", b"\xff\xfe"):
        proc = subprocess.run(
            [sys.executable, "-I", "-S", str(ENTRY), "claude"],
            input=data,
            env=env,
            capture_output=True,
        )
        assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b""
    assert len(spooled_fields(tmp_path / "spool")) == 4


def test_numbers_out_of_avro_range_leave_the_field_null() -> None:
    def stop(loop_count: object, duration: object) -> dict[str, object]:
        p = {"hook_event_name": "stop", "conversation_id": "c", "status": "completed"}
        return map_payload("cursor", {**p, "loop_count": loop_count, "duration": duration}, 1, None)

    edge = stop(2**31 - 1, -(2**63))
    assert (edge["retry_count"], edge["latency_ms"]) == (2**31 - 1, -(2**63))
    for loop_count, duration in ((2**31, 2**63), (float("nan"), float("inf")), (1e300, -1e300)):
        f = stop(loop_count, duration)
        assert f["retry_count"] is None and f["latency_ms"] is None
        encode_event(complete_event({**f, "seq": 0}))
    assert stop(-(2**31), 12.9)["latency_ms"] == 12


@pytest.mark.parametrize("agent", ["claude", "cursor", "codex"])
def test_a_payload_without_a_session_id_gets_an_id_of_its_own(tmp_path: Path, agent: str) -> None:
    """Payloads without a session id never share one fallback session (issue 12, item 2):
    two machines would count seq from 0 in it and the worker would drop one as a duplicate."""
    env = hook_env(tmp_path / "spool")
    payloads = [{"hook_event_name": "Stop", "n": i} for i in range(3)] + ["not an object"]
    for p in payloads:
        assert run_hook(agent, p, env).returncode == 0
    spooled = spooled_fields(tmp_path / "spool")
    ids = [f["session_id"] for f in spooled]
    assert len(spooled) == len(payloads) and len(set(ids)) == len(payloads)
    assert all(i.startswith(f"unknown-{agent}-") for i in ids)
    assert [f["seq"] for f in spooled] == [0] * len(payloads)
    # the id is a function of the payload, its time and host: mapping stays pure
    again = map_payload(agent, {"hook_event_name": "Stop"}, 5, "h")
    assert again == map_payload(agent, {"hook_event_name": "Stop"}, 5, "h")
    assert (
        again["session_id"]
        != map_payload(agent, {"hook_event_name": "Stop"}, 5, "h2")["session_id"]
    )
