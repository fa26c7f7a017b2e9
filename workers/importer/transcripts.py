"""Transcript lines -> Event fields, for Claude Code and Codex. Pure functions.

Claude Code (~/.claude/projects/<project>/<session>.jsonl): lines of type
user / assistant / system / summary / ..., with sessionId, cwd, timestamp,
and for assistant lines message.model, message.usage (input_tokens,
output_tokens, cache_creation_input_tokens, cache_read_input_tokens),
message.stop_reason and content blocks (text, thinking, tool_use); user lines
carry the prompt or tool_result blocks. Claude Code writes one line per
content block of a streamed message, repeating its usage: after the last
line of each message id comes one usage event (kind cost) holding its tokens,
keyed by the message id exactly as live capture keys it (workers/hooks/usage.py),
so a transcript both captured live and imported counts each message once.

Codex (~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl): {timestamp, type,
payload} with type session_meta (id, cwd), turn_context (model), response_item
(message, reasoning, function_call, custom_tool_call, *_output), event_msg
(token_count, user_message, agent_message, error, ...) and compacted. A
token_count line becomes a cost event whose tokens are those live capture
gives the same line (the growth of total_token_usage; same key).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from workers.hooks.mapping import clip, payload_text
from workers.hooks.redact import Redactor
from workers.hooks.usage import claude_usage, codex_line_usage, codex_state, parse_ts
from workers.importer import IMPORT_SEQ_BASE

Fields = dict[str, Any]
CODEX_TYPES = frozenset(("session_meta", "turn_context", "response_item", "event_msg", "compacted"))


def detect(first: Any) -> str:
    """'codex' or 'claude', from a transcript's first JSON line."""
    if isinstance(first, dict) and first.get("type") in CODEX_TYPES and "payload" in first:
        return "codex"
    return "claude"


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _claude_line(line: dict[str, Any]) -> Fields:
    f: Fields = {}
    kind = "hook"
    typ = line.get("type")
    msg = _dict(line.get("message"))
    content = msg.get("content")
    blocks = content if isinstance(content, list) else []
    if typ == "user":
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            kind = "error" if any(b.get("is_error") for b in results) else "tool_result"
            f["tool_call_id"] = results[0].get("tool_use_id")
        else:
            kind = "message"
    elif typ == "assistant":
        uses = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
        if uses:
            kind = "tool_call"
            f["tool"] = uses[0].get("name")
            f["tool_call_id"] = uses[0].get("id")
        else:
            kind = "message"
        f["model"] = msg.get("model")
        f["stop_reason"] = msg.get("stop_reason")
        if line.get("isApiErrorMessage"):
            kind = "error"
    elif typ in ("summary", "system"):
        kind = "lifecycle"
    f["kind"] = kind
    f["workspace"] = line.get("cwd")
    return f


def _codex_line(line: dict[str, Any], state: dict[str, Any]) -> Fields:
    typ = line.get("type")
    p = _dict(line.get("payload"))
    ptype = p.get("type")
    f: Fields = {"kind": "hook"}
    if typ == "session_meta":
        state["session_id"] = p.get("id") or state.get("session_id")
        state["cwd"] = p.get("cwd") or state.get("cwd")
        f["kind"] = "lifecycle"
    elif typ == "turn_context":
        state["model"] = p.get("model") or state.get("model")
        state["cwd"] = p.get("cwd") or state.get("cwd")
        f["kind"] = "lifecycle"
    elif typ == "compacted":
        f["kind"] = "lifecycle"
    elif typ == "response_item":
        if ptype in ("message", "reasoning"):
            f["kind"] = "message"
        elif ptype in ("function_call", "custom_tool_call", "local_shell_call", "web_search_call"):
            f["kind"] = "tool_call"
            f["tool"] = p.get("name") or ptype
            f["tool_call_id"] = p.get("call_id")
        elif ptype in ("function_call_output", "custom_tool_call_output"):
            f["kind"] = "tool_result"
            f["tool_call_id"] = p.get("call_id")
            out = p.get("output")
            try:
                meta = json.loads(out).get("metadata", {}) if isinstance(out, str) else {}
            except (ValueError, AttributeError):
                meta = {}
            if isinstance(meta, dict) and meta.get("exit_code") not in (None, 0):
                f["kind"] = "error"
    elif typ == "event_msg":
        if ptype == "token_count":
            f["kind"] = "cost"  # its tokens: codex_line_usage, in transcript_events
        elif ptype in ("error", "stream_error"):
            f["kind"] = "error"
        elif ptype in ("turn_aborted", "task_complete", "task_started"):
            f["kind"] = "lifecycle"
    f["model"] = state.get("model")
    f["workspace"] = state.get("cwd")
    return f


def transcript_events(path: str, redactor: Redactor, agent: str | None = None) -> Iterator[Fields]:
    """Event fields for every line of one transcript, in order (seq from the line position)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        # split on "\n" only, as live capture does (read_lines): the line index is
        # part of a Codex usage event's key, and splitlines() also splits on U+2028
        lines = f.read().split("\n")
    if lines and not lines[-1]:
        lines.pop()
    parsed: list[Any] = []
    for text in lines:
        try:
            parsed.append(json.loads(text) if text.strip() else None)
        except ValueError:
            parsed.append({"unparsed": text})
    first = next((p for p in parsed if p is not None), None)
    agent = agent or detect(first)
    stem = os.path.splitext(os.path.basename(path))[0]
    state: dict[str, Any] = {"session_id": None, "model": None, "cwd": None}
    last_index: dict[str, int] = {}
    if agent == "claude":
        for i, line in enumerate(parsed):
            if isinstance(line, dict) and state["session_id"] is None:
                state["session_id"] = line.get("sessionId")
            if isinstance(line, dict) and isinstance(line.get("message"), dict):
                mid = line["message"].get("id")
                if isinstance(mid, str):
                    last_index[mid] = i
    else:  # Codex names the session in its first line; the file name ends with the id too
        for line in parsed:
            if isinstance(line, dict) and line.get("type") == "session_meta":
                state["session_id"] = _dict(line.get("payload")).get("id")
                break
    prev_ts: int | None = None
    usage_state = codex_state()
    for i, raw in enumerate(parsed):
        usage: list[Fields] = []
        if raw is None:
            continue
        raw = clip(raw)
        line = redactor.obj(raw) if isinstance(raw, dict) else {"raw": redactor.obj(raw)}
        if agent == "claude":
            mid = (
                (line.get("message") or {}).get("id")
                if isinstance(line.get("message"), dict)
                else None
            )
            fields = _claude_line(line)
            session = line.get("sessionId") or state["session_id"] or stem
            state["cwd"] = fields.get("workspace") or state["cwd"]
            fields["workspace"] = state["cwd"]
            if mid and last_index.get(mid) == i:
                usage = claude_usage([line], str(session))
        else:
            fields = _codex_line(line, state)
            session = state.get("session_id") or (stem.rsplit("-", 5)[-5:] and stem)
            tokens = codex_line_usage(i, line, usage_state)
            if tokens is not None:
                del tokens["seq"], tokens["payload"], tokens["ts_ms"], tokens["ts_exact"]
                fields.update(tokens)
        ts = parse_ts(line.get("timestamp"))
        exact = ts is not None
        if ts is None:
            ts = prev_ts if prev_ts is not None else int(os.path.getmtime(path) * 1000)
        prev_ts = ts
        fields.update(
            {
                "session_id": redactor.text(str(session)),
                "seq": IMPORT_SEQ_BASE + i,
                "ts_ms": ts,
                "ts_exact": exact,
                "source": "import",
                "agent": agent,
                "payload": payload_text(line),
            }
        )
        yield {k: v for k, v in fields.items() if v is not None}
        for ev in usage:  # the message's tokens, keyed as live capture keys them
            ev.update(source="import", session_id=fields["session_id"])
            if not ev["ts_exact"]:
                ev["ts_ms"] = ts
            yield {k: v for k, v in ev.items() if v is not None}


def find_transcripts(paths: list[str]) -> list[str]:
    """The .jsonl files named, and those under the directories named, sorted."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, _dirs, files in os.walk(p):
                out += [os.path.join(root, f) for f in files if f.endswith(".jsonl")]
        else:
            out.append(p)
    return sorted(set(out))
