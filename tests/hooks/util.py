"""Helpers for the hook, shipper and importer tests: run hooks, read the spool, read Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.codec.batch import is_batch, split
from workers.codec.event import decode_event
from workers.hooks.spool import iter_frames
from workers.settings import EVENTS_TOPIC

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "workers" / "hooks" / "_entry.py"


def hook_env(spool: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KAIZEN_SPOOL_DIR"] = str(spool)
    env.setdefault("KAIZEN_HOOK_NO_SHIP", "1")
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def run_hook(
    agent: str, payload: Any, env: dict[str, str], *, argv_payload: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """The installed lean command, as the agent runs it."""
    data = json.dumps(payload)
    args = [sys.executable, "-I", "-S", str(ENTRY), agent]
    if argv_payload:
        args.append(data)
    return subprocess.run(
        args, input=b"" if argv_payload else data.encode(), env=env, capture_output=True
    )


def spool_bytes(spool: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((spool / "seg").glob("*.seg")))


def spooled_fields(spool: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((spool / "seg").glob("*.seg")):
        out += [f.fields() for f in iter_frames(path.read_bytes(), 0, 0)]
    return out


async def _consume_raw(bootstrap: str, want: int, timeout: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = None
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(EVENTS_TOPIC)
            if not parts:
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in sorted(parts or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        count = 0
        while time.monotonic() < deadline and count < want:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    values.append(r.value)
                    count += len(split(r.value)) if is_batch(r.value) else 1
        return values
    finally:
        await consumer.stop()


def consume_raw(bootstrap: str, want: int, timeout: float = 30.0) -> list[bytes]:
    """Raw kaizen.events message values from the beginning (until `want` events are seen)."""
    return asyncio.run(_consume_raw(bootstrap, want, timeout))


def decode_all(values: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for v in values:
        items = split(v) if is_batch(v) else [v]
        events += [decode_event(i) for i in items]
    return events


def consume_events(
    bootstrap: str, want: int, timeout: float = 30.0, sessions: set[str] | None = None
) -> list[dict[str, Any]]:
    events = decode_all(consume_raw(bootstrap, want, timeout))
    if sessions is not None:
        events = [e for e in events if e["session_id"] in sessions]
    return events


def claude_hook_payloads(transcript: Path, session: str | None = None) -> list[dict[str, Any]]:
    """The hook payloads Claude Code sends for the session a transcript records.

    One payload per hook call, in order: SessionStart; UserPromptSubmit per prompt;
    PreToolUse per tool_use block (and SubagentStart, SubagentStop for a Task);
    PostToolUse (or PostToolUseFailure when the result is an error) per tool_result
    block, with the call's tool name and input; PreCompact before
    a compact boundary; StopFailure for an API error line; Stop after each turn's last
    assistant line; SessionEnd. Each names
    the transcript (`transcript_path`), so the Stop hooks note it for live token capture.
    """
    lines = [json.loads(x) for x in transcript.read_text().splitlines() if x.strip()]
    sid = session or next(str(x["sessionId"]) for x in lines if x.get("sessionId"))
    base = {"session_id": sid, "transcript_path": str(transcript)}
    cwd = next((x["cwd"] for x in lines if x.get("cwd")), None)
    if cwd:
        base["cwd"] = cwd
    out: list[dict[str, Any]] = [{**base, "hook_event_name": "SessionStart", "source": "startup"}]
    calls: dict[str, dict[str, Any]] = {}
    in_turn = False
    for line in lines:
        msg = line.get("message") if isinstance(line.get("message"), dict) else {}
        content = msg.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if line.get("isApiErrorMessage"):
            out.append({**base, "hook_event_name": "StopFailure", "error_type": "rate_limit"})
            in_turn = False
        elif line.get("type") == "system" and line.get("subtype") == "compact_boundary":
            out.append({**base, "hook_event_name": "PreCompact", "trigger": "auto"})
        elif line.get("type") == "user" and isinstance(content, str):
            if in_turn:
                out.append({**base, "hook_event_name": "Stop", "stop_hook_active": False})
            out.append({**base, "hook_event_name": "UserPromptSubmit", "prompt": content})
            in_turn = True
        for b in blocks:
            if b.get("type") == "tool_use":
                calls[b["id"]] = {"tool_name": b["name"], "tool_input": b.get("input", {})}
                out.append(
                    {
                        **base,
                        "hook_event_name": "PreToolUse",
                        **calls[b["id"]],
                        "tool_use_id": b["id"],
                    }
                )
                if b["name"] in ("Task", "Agent"):
                    agent = {"agent_id": b["id"], "agent_type": "general-purpose"}
                    out.append({**base, "hook_event_name": "SubagentStart", **agent})
                    out.append({**base, "hook_event_name": "SubagentStop", **agent})
            elif b.get("type") == "tool_result":
                call = calls.get(b["tool_use_id"], {})
                result = b.get("content")
                if b.get("is_error"):
                    extra = {"hook_event_name": "PostToolUseFailure", "error": result}
                else:
                    extra = {"hook_event_name": "PostToolUse", "tool_response": result}
                out.append({**base, **call, **extra, "tool_use_id": b["tool_use_id"]})
    if in_turn:
        out.append({**base, "hook_event_name": "Stop", "stop_hook_active": False})
    out.append({**base, "hook_event_name": "SessionEnd", "reason": "other"})
    return out


CLAUDE_TRANSCRIPT = (
    ROOT
    / "workers"
    / "samples"
    / "transcripts"
    / "claude-7f3c2a91-5d4e-4b8a-9c1f-2e6d8b0a4c17.jsonl"
)


def sample_claude_session(into: Path, session: str, cwd: str | None = None) -> Path:
    """The bundled Claude Code sample transcript under another session id (and `cwd`),
    with a subagent call (Task) and an API error line added after its last turn.

    Tool calls Grep, Bash (failed), Edit, Task; one compaction; one API error; five
    assistant messages with usage.
    """
    lines = [json.loads(x) for x in CLAUDE_TRANSCRIPT.read_text().splitlines() if x.strip()]
    last = lines[-3]  # the last turn's closing assistant text line: a template
    use = {"type": "tool_use", "id": "toolu_01TaskA", "name": "Task", "input": {"p": 1}}
    task = {**last, "uuid": "task", "message": {**last["message"], "id": "msg_01FakeTask"}}
    task["message"]["content"] = [use]
    result = {
        "type": "user",
        "timestamp": last["timestamp"],
        "message": {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01TaskA", "content": "ok"}],
        },
    }
    api_error = {**last, "uuid": "api-error", "isApiErrorMessage": True}
    api_error["message"] = {**last["message"], "id": "msg_err", "model": "<synthetic>"}
    out = []
    for x in [*lines, task, result, api_error]:
        x = {**x, "sessionId": session}
        if cwd is not None:
            x["cwd"] = cwd
        out.append(json.dumps(x) + "\n")
    into.write_text("".join(out))
    return into
