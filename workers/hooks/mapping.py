"""Agent hook payloads -> Event fields. Pure functions, stdlib only.

Each `map_*` takes an already *redacted* payload (a parsed JSON object) and
returns a dict of Event fields without `seq` (the spool assigns it). The
redacted payload itself is kept as JSON text in `payload`, with very long
strings shortened (`MAX_STRING`), so a huge tool result cannot make a message
the broker refuses. Invariants:

- Never raises on odd input: unknown event names become kind "hook".
- A payload without a session id gets a session of its own,
  `unknown-<agent>-<16 hex>`, a checksum of its payload text, time and host:
  one shared fallback would mix every machine's unrelated payloads into one
  session (their events no longer collide: each spool has its own producer id).
- Field names are exactly those of schemas/event.avsc; values fit its types:
  a payload number out of its field's Avro range leaves the field null (the
  number stays in `payload`).
"""

from __future__ import annotations

import zlib

from workers.hooks import fastjson

TYPE_CHECKING = False  # typing costs ~3 ms to import; the hook path avoids it
if TYPE_CHECKING:
    from typing import Any

MAX_STRING = 16_384  # characters kept of any one string in `payload`
# Strings are clipped to this before redaction (bounding its cost on huge tool
# output), then to MAX_STRING after it. MAX_STRING < CLIP_BEFORE_REDACTION, so a
# secret cut by the first clip lies wholly in the part the second one drops.
CLIP_BEFORE_REDACTION = 65_536
MAX_PAYLOAD = 200_000  # characters of payload JSON; beyond this, strings are cut harder

if TYPE_CHECKING:
    Fields = dict[str, Any]

# Claude Code (and Codex's Claude-compatible hooks): hook_event_name -> kind
CLAUDE_KINDS: dict[str, str] = {
    "SessionStart": "lifecycle",
    "SessionEnd": "lifecycle",
    "UserPromptSubmit": "message",
    "PreToolUse": "tool_call",
    "PermissionRequest": "hook",
    "PostToolUse": "tool_result",
    "PostToolUseFailure": "error",
    "Notification": "hook",
    "PreCompact": "lifecycle",
    "PostCompact": "lifecycle",
    "Stop": "lifecycle",
    "StopFailure": "error",
    "SubagentStart": "lifecycle",
    "SubagentStop": "lifecycle",
}

# Cursor hooks.json events: name -> (kind, tool when the payload names none)
CURSOR_KINDS: dict[str, tuple[str, str | None]] = {
    "sessionStart": ("lifecycle", None),
    "sessionEnd": ("lifecycle", None),
    "beforeSubmitPrompt": ("message", None),
    "beforeShellExecution": ("tool_call", "Shell"),
    "afterShellExecution": ("tool_result", "Shell"),
    "beforeMCPExecution": ("tool_call", "MCP"),
    "afterMCPExecution": ("tool_result", "MCP"),
    "beforeReadFile": ("tool_call", "Read"),
    "afterFileEdit": ("tool_result", "Edit"),
    "afterAgentResponse": ("message", None),
    "afterAgentThought": ("message", None),
    "preToolUse": ("tool_call", None),
    "postToolUse": ("tool_result", None),
    "postToolUseFailure": ("error", None),
    "subagentStart": ("lifecycle", None),
    "subagentStop": ("lifecycle", None),
    "preCompact": ("lifecycle", None),
    "stop": ("lifecycle", None),
    "beforeTabFileRead": ("tool_call", "TabRead"),
    "afterTabFileEdit": ("tool_result", "TabEdit"),
}


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return str(value)


LONG_MAX = (1 << 63) - 1  # Avro long
INT_MAX = (1 << 31) - 1  # Avro int


def _int(value: Any, high: int = LONG_MAX) -> int | None:
    """An integer field from a payload number; None when it is not one or out of range.

    The payload keeps the number as it came: only the typed field is left empty,
    so a value Avro cannot hold never reaches the encoder.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not -high - 1 <= value <= high:  # also false for NaN
            return None
        value = int(value)
    if isinstance(value, int) and -high - 1 <= value <= high:
        return value
    return None


def clip(value: Any, limit: int = CLIP_BEFORE_REDACTION) -> Any:
    """`value` with every string longer than `limit` cut (the hook does this before redacting)."""
    return _shorten(value, limit)


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) > limit:
            return f"{value[:limit]}…[{len(value) - limit} more chars]"
        return value
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    return value


def payload_text(payload: Any) -> str:
    """The payload as compact JSON text, long strings shortened so it stays small."""
    limit = MAX_STRING
    text = fastjson.dumps(_shorten(payload, limit))
    while len(text) > MAX_PAYLOAD and limit > 64:
        limit //= 4
        text = fastjson.dumps(_shorten(payload, limit))
    return text


def nonzero_exit(*holders: Any) -> bool:
    """Whether a tool's result names a non-zero exit code (`exit_code` or `exitCode`,
    top level or in `tool_response`): a failed command, whatever the hook's event name."""
    for holder in holders:
        if isinstance(holder, dict):
            code = holder.get("exit_code", holder.get("exitCode"))
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                return True
    return False


def _base(
    agent: str, session: Any, kind: str, payload: Any, ts_ms: int, host: str | None
) -> Fields:
    text = payload_text(payload)
    return {
        "session_id": _str(session) or fallback_session(agent, text, ts_ms, host),
        "ts_ms": ts_ms,
        "kind": kind,
        "source": "hook",
        "agent": agent,
        "host": host,
        "payload": text,
    }


def fallback_session(agent: str, payload: str, ts_ms: int, host: str | None) -> str:
    """The session of a payload that names none: its own, from what it holds and when/where."""
    raw = f"{ts_ms}\0{host}\0{payload}".encode("utf-8", "replace")
    return f"unknown-{agent}-{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"


def map_claude(p: dict[str, Any], ts_ms: int, host: str | None, agent: str = "claude") -> Fields:
    """Claude Code hook input (also Codex's Claude-compatible hooks, agent="codex")."""
    event = _str(p.get("hook_event_name")) or ""
    kind = CLAUDE_KINDS.get(event, "hook")
    if kind == "tool_result" and nonzero_exit(p.get("tool_response")):
        kind = "error"  # Codex reports a failed command as PostToolUse with its exit code
    f = _base(agent, p.get("session_id"), kind, p, ts_ms, host)
    f["workspace"] = _str(p.get("cwd"))
    f["model"] = _str(p.get("model"))
    f["tool"] = _str(p.get("tool_name"))
    f["tool_call_id"] = _str(p.get("tool_use_id"))
    if event in ("Stop", "SubagentStop"):
        f["stop_reason"] = "end_turn"
    elif event == "StopFailure":
        f["stop_reason"] = _str(p.get("error_type") or p.get("error")) or "error"
    elif event == "SessionEnd":
        f["stop_reason"] = _str(p.get("reason"))
    elif event == "PostToolUseFailure" and p.get("is_interrupt"):
        f["stop_reason"] = "interrupted"
    return f


def map_cursor(p: dict[str, Any], ts_ms: int, host: str | None) -> Fields:
    event = _str(p.get("hook_event_name")) or ""
    kind, default_tool = CURSOR_KINDS.get(event, ("hook", None))
    status = _str(p.get("status"))
    if event == "stop" and status == "error":
        kind = "error"
    elif kind == "tool_result" and nonzero_exit(p, p.get("tool_output")):
        kind = "error"  # a shell command (or tool) that exited non-zero failed
    session = p.get("conversation_id") or p.get("session_id")
    f = _base("cursor", session, kind, p, ts_ms, host)
    roots = p.get("workspace_roots")
    root = roots[0] if isinstance(roots, list) and roots else None
    f["workspace"] = _str(root) or _str(p.get("cwd"))
    f["model"] = _str(p.get("model"))
    f["tool"] = _str(p.get("tool_name")) or default_tool
    f["tool_call_id"] = _str(p.get("tool_use_id"))
    f["latency_ms"] = _int(p.get("duration"))
    if event == "stop":
        f["stop_reason"] = status
        f["retry_count"] = _int(p.get("loop_count"), INT_MAX)
    return f


def map_codex_notify(p: dict[str, Any], ts_ms: int, host: str | None) -> Fields:
    """Codex's legacy `notify` program: JSON as the last command-line argument."""
    kind = "message" if p.get("type") == "agent-turn-complete" else "hook"
    f = _base("codex", p.get("thread-id") or p.get("session_id"), kind, p, ts_ms, host)
    f["workspace"] = _str(p.get("cwd"))
    f["model"] = _str(p.get("model"))
    if kind == "message":
        f["stop_reason"] = "turn_complete"
    return f


def map_codex(p: dict[str, Any], ts_ms: int, host: str | None) -> Fields:
    """Codex: Claude-compatible hooks (hook_event_name) or a legacy notify payload (type)."""
    if "hook_event_name" not in p and "type" in p:
        return map_codex_notify(p, ts_ms, host)
    return map_claude(p, ts_ms, host, agent="codex")


def map_payload(agent: str, payload: Any, ts_ms: int, host: str | None) -> Fields:
    """Dispatch on the agent; a payload that is not a JSON object is kept as kind hook."""
    if not isinstance(payload, dict):
        payload = {"raw": payload}
    if agent == "claude":
        return map_claude(payload, ts_ms, host)
    if agent == "cursor":
        return map_cursor(payload, ts_ms, host)
    if agent == "codex":
        return map_codex(payload, ts_ms, host)
    f = map_claude(payload, ts_ms, host)
    f["agent"] = "other"
    return f
