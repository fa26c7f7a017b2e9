"""Live token capture: which transcript to read, and transcript lines -> usage events.

Stdlib only. The hook side (`note`) is one small file write: on the hooks that
close a turn it records *that* a transcript has news; the detached shipper
(`workers/shipper/capture.py`) does the reading, so a hook's latency does not
grow with the transcript. The pure functions here (`claude_usage`,
`codex_usage`, `usage_seq`) are shared with `import`, which is what makes live
capture and a later import produce the *same* events.

Identity (the invariant this module owns): a usage event's key is derived
from what it counts, never from when or where it was read: its producer is ""
(the spool's id goes only on events the spool numbers), so the key
(session_id, "", seq) is the same from any machine and from `import`.

- Claude Code: one usage event (kind "cost") per assistant message id, with
  seq = USAGE_SEQ_BASE | 60 bits of blake2b(message id). Claude Code writes one
  line per content block of a streamed message, repeating its usage; the last
  line of the id carries the final counts (what ccusage counts too). Reading
  the same message twice (live twice, or live then `import`) gives the same
  (session_id, producer, seq), which the worker's dedupe keeps once.
- Codex: one usage event per `token_count` line of the rollout file, with
  seq = IMPORT_SEQ_BASE + the line's index (what `import` gives that line), and
  tokens = the growth of `total_token_usage` since the previous counted line,
  so the repeated token_count lines Codex writes count nothing.

Token fields follow Anthropic's split: tokens_in excludes cached input
(Codex's input_tokens includes cached_input_tokens: it is subtracted), and
cache_read_tokens / cache_creation_tokens hold the cached parts.
"""

from __future__ import annotations

import os

from workers.hooks import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Fields = dict[str, Any]

USAGE_SEQ_BASE = 1 << 62
IMPORT_SEQ_BASE = 1 << 32  # == workers.importer.IMPORT_SEQ_BASE (that package imports more)
CLOSING_EVENTS = frozenset(("Stop", "SubagentStop", "PreCompact", "SessionEnd"))
MAX_READ = 64 << 20  # bytes of transcript read per pass; the rest waits for the next one


def usage_seq(message_id: str) -> int:
    """The seq of the usage event of one Claude message: stable, in [2**62, 2**63)."""
    import hashlib  # only the shipper and import get here, never the hook

    digest = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return USAGE_SEQ_BASE | (int.from_bytes(digest, "big") >> 4)


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def parse_ts(value: Any) -> int | None:
    """ISO-8601 text (`...Z` or with offset) -> ms since the epoch; None when not one."""
    if not isinstance(value, str) or not value:
        return None
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


# -- hook side ---------------------------------------------------------------


def pending_dir(spool_path: str) -> str:
    return os.path.join(spool_path, "usage", "pending")


def note_key(text: str) -> str:
    import zlib

    raw = text.encode("utf-8", "surrogatepass")
    return f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}{len(raw):x}"


def note(agent: str, payload: Any, spool_path: str) -> str | None:
    """Record a pending read when `payload` closes a turn; the note's path, or None.

    The note holds what the reader needs (transcript path, session, agent);
    one note per transcript, rewritten by later hooks. Not fsynced: a lost
    note only delays the read to the next closing hook, which reads from the
    same offset.
    """
    if not isinstance(payload, dict) or agent not in ("claude", "codex"):
        return None
    if os.environ.get("KAIZEN_USAGE_CAPTURE") == "0":
        return None
    event = payload.get("hook_event_name")
    path = None
    if event in CLOSING_EVENTS:
        path = payload.get("agent_transcript_path") if event == "SubagentStop" else None
        path = path or payload.get("transcript_path")
    elif agent == "codex" and payload.get("type") == "agent-turn-complete":
        thread = payload.get("thread-id")
        if isinstance(thread, str) and thread:
            path = "codex-thread:" + thread  # the shipper finds the rollout file
    if not isinstance(path, str) or not path:
        return None
    body = {
        "agent": agent,
        "transcript": path,
        "session_id": payload.get("session_id") or payload.get("thread-id"),
        "cwd": payload.get("cwd"),
    }
    directory = pending_dir(spool_path)
    target = os.path.join(directory, note_key(path))
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, fastjson.dumps(body).encode())
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return target


# -- reading -----------------------------------------------------------------


def read_lines(path: str, offset: int, limit: int = MAX_READ) -> tuple[list[Any], int]:
    """Parsed JSON lines from byte `offset` up to the last complete line; the new offset.

    A line still being written (no newline yet) is left for the next read. A
    line that is not JSON becomes None (it keeps its index).
    """
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out: list[Any] = []
    for raw in data[: end + 1].split(b"\n")[:-1]:
        try:
            out.append(fastjson.loads(raw) if raw.strip() else None)
        except ValueError:
            out.append(None)
    return out, offset + end + 1


# -- lines -> usage events ---------------------------------------------------


def _claude_event(line: dict[str, Any], session: str | None) -> Fields | None:
    msg = _dict(line.get("message"))
    usage = msg.get("usage")
    mid = msg.get("id")
    model = msg.get("model")
    if not isinstance(usage, dict) or not isinstance(mid, str) or model == "<synthetic>":
        return None
    ts = parse_ts(line.get("timestamp"))
    sid = line.get("sessionId") or session
    if not isinstance(sid, str) or not sid:
        return None
    info = {"message_id": mid, "request_id": line.get("requestId")}
    if line.get("isSidechain"):
        info["sidechain"] = True
    return {
        "session_id": sid,
        "seq": usage_seq(mid),
        "ts_ms": ts if ts is not None else 0,
        "ts_exact": ts is not None,
        "kind": "cost",
        "agent": "claude",
        "model": model if isinstance(model, str) else None,
        "workspace": line.get("cwd") if isinstance(line.get("cwd"), str) else None,
        "tokens_in": _int(usage.get("input_tokens")),
        "tokens_out": _int(usage.get("output_tokens")),
        "cache_creation_tokens": _int(usage.get("cache_creation_input_tokens")),
        "cache_read_tokens": _int(usage.get("cache_read_input_tokens")),
        "stop_reason": msg.get("stop_reason") if isinstance(msg.get("stop_reason"), str) else None,
        "payload": fastjson.dumps(info),
    }


def claude_usage(lines: list[Any], session: str | None = None) -> list[Fields]:
    """One usage event per assistant message id in `lines`, from its last line, in order.

    `session` is used for lines that name none. Lines without usage, API-error
    placeholders (model "<synthetic>") and non-objects yield nothing.
    """
    last: dict[str, Fields] = {}
    for line in lines:
        if isinstance(line, dict) and line.get("type") == "assistant":
            ev = _claude_event(line, session)
            if ev is not None:
                mid = fastjson.loads(ev["payload"])["message_id"]
                last.pop(mid, None)  # re-insert: the order is that of the last lines
                last[mid] = ev
    return list(last.values())


_CODEX_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")


def codex_state() -> dict[str, Any]:
    """What a Codex reader carries from one read of a rollout file to the next."""
    return {"session_id": None, "model": None, "cwd": None, "total": None}


def codex_line_usage(index: int, line: Any, state: dict[str, Any]) -> Fields | None:
    """The usage event of rollout line `index` (None for other lines); updates `state`."""
    if not isinstance(line, dict):
        return None
    typ = line.get("type")
    p = _dict(line.get("payload"))
    if typ == "session_meta":
        state["session_id"] = p.get("id") or state["session_id"]
        state["cwd"] = p.get("cwd") or state["cwd"]
        return None
    if typ == "turn_context":
        state["model"] = p.get("model") or state["model"]
        state["cwd"] = p.get("cwd") or state["cwd"]
        return None
    if typ != "event_msg" or p.get("type") != "token_count":
        return None
    info = _dict(p.get("info"))
    if not info:
        return None
    total = _dict(info.get("total_token_usage"))
    last = _dict(info.get("last_token_usage"))
    if total:
        now = [_int(total.get(k)) for k in _CODEX_FIELDS]
        before = state["total"] or [0, 0, 0, 0]
        delta = [max(a - b, 0) for a, b in zip(now, before, strict=True)]
        state["total"] = now
        if not any(delta):
            return None  # Codex repeats token_count lines (e.g. rate-limit updates)
    else:
        delta = [_int(last.get(k)) for k in _CODEX_FIELDS]
    inp, cached, out, reasoning = delta
    ts = parse_ts(line.get("timestamp"))
    sid = state["session_id"]
    if not isinstance(sid, str) or not sid:
        return None
    return {
        "session_id": sid,
        "seq": IMPORT_SEQ_BASE + index,
        "ts_ms": ts if ts is not None else 0,
        "ts_exact": ts is not None,
        "kind": "cost",
        "agent": "codex",
        "model": state["model"],
        "workspace": state["cwd"],
        "tokens_in": max(inp - cached, 0),
        "tokens_out": out,
        "reasoning_tokens": reasoning,
        "cache_read_tokens": cached,
        "cache_creation_tokens": 0,
        "context_used_tokens": _int(last.get("input_tokens")) or None,
        "context_max_tokens": _int(info.get("model_context_window")) or None,
        "payload": fastjson.dumps({"rollout_line": index}),
    }


def codex_usage(lines: list[Any], first_index: int, state: dict[str, Any]) -> list[Fields]:
    """Usage events of rollout lines `first_index`, `first_index + 1`, ...; updates `state`."""
    out = []
    for i, line in enumerate(lines):
        ev = codex_line_usage(first_index + i, line, state)
        if ev is not None:
            out.append(ev)
    return out
