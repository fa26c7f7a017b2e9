"""Per-session summaries: fold Event fields into a SessionSummary. Pure.

Invariants (this module owns them; docs/ARCHITECTURE.md names it):

- Idempotent per (session_id, producer, seq): a summary remembers the seqs it
  folded (as ranges, one list per producer: `seqs` for producer "", `produced`
  for the others), and folding an event whose key it holds changes nothing. So
  a redelivered event, or one read twice by live capture and `import` (same
  key, workers/hooks/usage.py), counts once, while two machines' events of one
  session (each spool numbers from 0) all count.
- Order-free: folding the same set of events in any order gives an equal
  summary (active time is kept as merged intervals, not as a running sum).
- Mergeable: `merge(a, b)` of summaries over disjoint keys equals the summary
  of all their events; overlapping keys are refused (ValueError), never summed.
- Tokens are counted from `cost` events only (the usage events of live capture
  and import): other events never carry them, and counting one kind keeps a
  session that was both hooked and imported right.
- Cost is not stored: `usage` keeps the cost inputs (tokens per model, UTC day
  and context class) and workers/analytics/cost.py prices them when read, so a
  corrected price re-prices history without re-ingesting anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

IDLE_MS = 5 * 60 * 1000  # a gap longer than this between events is idle, not active time
LARGE_CONTEXT = 200_000  # prompt tokens above which providers charge their long-context tier
PENDING_CALLS_MAX = 256  # tool calls remembered while waiting for their result
TOKEN_FIELDS = (
    ("in", "tokens_in"),
    ("out", "tokens_out"),
    ("cache_write", "cache_creation_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("reasoning", "reasoning_tokens"),
)
SUBAGENT_TOOLS = frozenset(("Task", "Agent"))
# see SessionSummary.split_bytes
FOLD_STATE = ("seqs", "produced", "pending_calls", "orphan_failures")
_SUBAGENT_MARKS = ('"hook_event_name":"SubagentStart"', '"hook_event_name":"subagentStart"')
_COMPACT_MARKS = (
    '"hook_event_name":"PreCompact"',
    '"hook_event_name":"preCompact"',
    '"subtype":"compact_boundary"',
    '"type":"compacted"',
)
_DENIAL_MARKS = (
    "doesn't want to proceed",
    "tool use was rejected",
    '"permission":"deny"',
    '"decision":"deny"',
    "permission denied",
    "Permission denied",
)


def usage_key(model: str | None, ts_ms: int, prompt_tokens: int) -> str:
    """The cost-input bucket of one usage event: model, UTC day, context class."""
    day = time.strftime("%Y-%m-%d", time.gmtime(ts_ms / 1000))
    return f"{model or '?'}\t{day}\t{'L' if prompt_tokens > LARGE_CONTEXT else 'S'}"


def split_usage_key(key: str) -> tuple[str | None, str, bool]:
    model, day, size = key.split("\t")
    return (None if model == "?" else model), day, size == "L"


def _add_range(ranges: list[list[int]], seq: int) -> bool:
    """Insert seq into sorted disjoint [lo, hi] ranges; False when it was already there."""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] < seq:
            lo = mid + 1
        else:
            hi = mid
    i = lo  # first range whose end >= seq
    if i < len(ranges) and ranges[i][0] <= seq:
        return False
    joins_left = i > 0 and ranges[i - 1][1] == seq - 1
    joins_right = i < len(ranges) and ranges[i][0] == seq + 1
    if joins_left and joins_right:
        ranges[i - 1][1] = ranges[i][1]
        del ranges[i]
    elif joins_left:
        ranges[i - 1][1] = seq
    elif joins_right:
        ranges[i][0] = seq
    else:
        ranges.insert(i, [seq, seq])
    return True


def _add_time(intervals: list[list[int]], ts: int, idle_ms: int = IDLE_MS) -> None:
    """Insert ts into sorted activity intervals, joining neighbours closer than idle_ms."""
    i = 0
    n = len(intervals)
    while i < n and intervals[i][1] < ts:
        i += 1
    if i < n and intervals[i][0] <= ts:
        return  # inside an interval
    new = [ts, ts]
    if i > 0 and ts - intervals[i - 1][1] <= idle_ms:
        i -= 1
        intervals[i][1] = ts
        new = intervals[i]
    else:
        intervals.insert(i, new)
    if i + 1 < len(intervals) and intervals[i + 1][0] - new[1] <= idle_ms:
        new[1] = intervals[i + 1][1]
        del intervals[i + 1]


def _bump(counter: dict[str, int], key: str, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


@dataclass
class SessionSummary:
    """What one session did, folded from its events (see the module invariants)."""

    session_id: str
    agent: str | None = None
    workspace: str | None = None
    host: str | None = None
    first_ts: int | None = None
    last_ts: int | None = None
    active: list[list[int]] = field(default_factory=list)  # [start, end] ms, gaps > IDLE_MS
    events: dict[str, int] = field(default_factory=dict)  # by kind
    tokens: dict[str, int] = field(default_factory=dict)  # in, out, cache_write, ...
    usage: dict[str, list[int]] = field(default_factory=dict)  # usage_key -> [in, out, cw, cr]
    models: dict[str, int] = field(default_factory=dict)  # events naming each model
    tool_calls: dict[str, int] = field(default_factory=dict)
    tool_failures: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    subagents: int = 0
    compactions: int = 0
    permission_requests: int = 0
    permission_denials: int = 0
    context_peak: int = 0  # largest prompt (input incl. cache) of one request
    context_max: int = 0  # largest context window an event named
    seqs: list[list[int]] = field(default_factory=list)  # of producer ""
    produced: dict[str, list[list[int]]] = field(default_factory=dict)  # of the others
    pending_calls: dict[str, str] = field(default_factory=dict)  # tool_call_id -> tool
    orphan_failures: dict[str, int] = field(default_factory=dict)  # failed before its call came

    # -- derived ----------------------------------------------------------

    @property
    def event_count(self) -> int:
        return sum(self.events.values())

    @property
    def active_ms(self) -> int:
        return sum(end - start for start, end in self.active)

    @property
    def idle_gaps(self) -> list[tuple[int, int]]:
        """(start, end) ms of every gap longer than IDLE_MS, in order."""
        return [(a[1], b[0]) for a, b in zip(self.active, self.active[1:], strict=False)]

    @property
    def total_tokens(self) -> int:
        t = self.tokens
        return t.get("in", 0) + t.get("out", 0) + t.get("cache_write", 0) + t.get("cache_read", 0)

    @property
    def failures(self) -> int:
        return sum(self.tool_failures.values())

    # -- folding ----------------------------------------------------------

    def fold(self, event: dict[str, Any]) -> bool:
        """Count one event; False (and nothing changed) when its key was already counted."""
        producer = event.get("producer") or ""
        ranges = self.produced.setdefault(producer, []) if producer else self.seqs
        if not _add_range(ranges, int(event["seq"])):
            return False
        kind = event.get("kind") or "hook"
        ts = event.get("ts_ms")
        _bump(self.events, kind)
        for attr in ("agent", "workspace", "host"):
            if getattr(self, attr) is None and event.get(attr):
                setattr(self, attr, event[attr])
        if isinstance(ts, int) and ts > 0:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
            _add_time(self.active, ts)
        model = event.get("model")
        if model:
            _bump(self.models, model)
        if kind == "cost":
            self._fold_usage(event, model, ts if isinstance(ts, int) else 0)
        elif kind == "tool_call":
            self._fold_call(event)
        elif kind in ("tool_result", "error"):
            self._fold_result(event, kind)
        elif kind in ("lifecycle", "hook"):
            self._fold_lifecycle(event)
        return True

    def _fold_usage(self, event: dict[str, Any], model: str | None, ts: int) -> None:
        values = [event.get(name) or 0 for _, name in TOKEN_FIELDS]
        for (short, _), v in zip(TOKEN_FIELDS, values, strict=True):
            if v:
                _bump(self.tokens, short, v)
        tin, tout, cw, cr = values[:4]
        prompt = tin + cw + cr
        bucket = self.usage.setdefault(usage_key(model, ts, prompt), [0, 0, 0, 0])
        for i, v in enumerate((tin, tout, cw, cr)):
            bucket[i] += v
        used = event.get("context_used_tokens") or prompt
        self.context_peak = max(self.context_peak, used)
        self.context_max = max(self.context_max, event.get("context_max_tokens") or 0)

    def _fold_call(self, event: dict[str, Any]) -> None:
        tool = event.get("tool") or "?"
        _bump(self.tool_calls, tool)
        call_id = event.get("tool_call_id")
        if call_id and self.orphan_failures.pop(call_id, None):
            # its failure came first and was counted under "?": it is this tool's
            _bump(self.tool_failures, "?", -1)
            if not self.tool_failures["?"]:
                del self.tool_failures["?"]
            _bump(self.tool_failures, tool)
        elif call_id and len(self.pending_calls) < PENDING_CALLS_MAX:
            self.pending_calls[call_id] = tool
        if tool in SUBAGENT_TOOLS and event.get("source") == "import":
            self.subagents += 1  # hooks count SubagentStart instead

    def _fold_result(self, event: dict[str, Any], kind: str) -> None:
        call_id = event.get("tool_call_id")
        tool = event.get("tool") or (self.pending_calls.get(call_id) if call_id else None)
        if call_id:
            self.pending_calls.pop(call_id, None)
        payload = event.get("payload") or ""
        if any(mark in payload for mark in _DENIAL_MARKS):
            self.permission_denials += 1
        if kind == "error":
            self.errors += 1
            if tool or call_id:
                _bump(self.tool_failures, tool or "?")
            if not tool and call_id and len(self.orphan_failures) < PENDING_CALLS_MAX:
                self.orphan_failures[call_id] = 1

    def _fold_lifecycle(self, event: dict[str, Any]) -> None:
        payload = event.get("payload") or ""
        if '"hook_event_name":"PermissionRequest"' in payload:
            self.permission_requests += 1
        elif any(mark in payload for mark in _SUBAGENT_MARKS):
            self.subagents += 1
        elif any(mark in payload for mark in _COMPACT_MARKS):
            self.compactions += 1

    # -- merging and storage ----------------------------------------------

    def merge(self, other: SessionSummary) -> SessionSummary:
        """The summary of both event sets; ValueError when they share a seq."""
        if other.session_id != self.session_id:
            raise ValueError(f"cannot merge sessions {self.session_id!r} and {other.session_id!r}")
        if _overlap(self.seqs, other.seqs) or any(
            _overlap(self.produced.get(p, []), r) for p, r in other.produced.items()
        ):
            raise ValueError(f"summaries of {self.session_id!r} share seqs: not disjoint")
        out = SessionSummary.from_dict(json.loads(json.dumps(self.to_dict())))
        out.seqs = _join([*out.seqs, *other.seqs], 1)
        for p, r in other.produced.items():
            out.produced[p] = _join([*out.produced.get(p, []), *r], 1)
        for attr in ("agent", "workspace", "host"):
            if getattr(out, attr) is None:
                setattr(out, attr, getattr(other, attr))
        for ts in (other.first_ts, other.last_ts):
            if ts is not None:
                out.first_ts = ts if out.first_ts is None else min(out.first_ts, ts)
                out.last_ts = ts if out.last_ts is None else max(out.last_ts, ts)
        out.active = _join([*out.active, *other.active], IDLE_MS)
        for name in ("events", "tokens", "models", "tool_calls", "tool_failures"):
            mine = getattr(out, name)
            for k, v in getattr(other, name).items():
                _bump(mine, k, v)
        for k, vals in other.usage.items():
            bucket = out.usage.setdefault(k, [0, 0, 0, 0])
            for i, v in enumerate(vals):
                bucket[i] += v
        for name in ("errors", "subagents", "compactions", "permission_requests"):
            setattr(out, name, getattr(out, name) + getattr(other, name))
        out.permission_denials += other.permission_denials
        out.context_peak = max(out.context_peak, other.context_peak)
        out.context_max = max(out.context_max, other.context_max)
        for k, v in other.pending_calls.items():
            if len(out.pending_calls) < PENDING_CALLS_MAX:
                out.pending_calls.setdefault(k, v)
        for k in other.orphan_failures:
            out.orphan_failures[k] = 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "agent": self.agent,
            "workspace": self.workspace,
            "host": self.host,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "active": [list(r) for r in self.active],
            "events": dict(self.events),
            "tokens": dict(self.tokens),
            "usage": {k: list(v) for k, v in self.usage.items()},
            "models": dict(self.models),
            "tool_calls": dict(self.tool_calls),
            "tool_failures": dict(self.tool_failures),
            "errors": self.errors,
            "subagents": self.subagents,
            "compactions": self.compactions,
            "permission_requests": self.permission_requests,
            "permission_denials": self.permission_denials,
            "context_peak": self.context_peak,
            "context_max": self.context_max,
            "seqs": [list(r) for r in self.seqs],
            "produced": {p: [list(r) for r in rs] for p, rs in self.produced.items()},
            "pending_calls": dict(self.pending_calls),
            "orphan_failures": dict(self.orphan_failures),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionSummary:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def split_bytes(self) -> tuple[bytes, bytes]:
        """(what readers need, the fold state): the seqs folded and the calls awaiting a
        result only matter to later folds, and grow with the session (one range per usage
        event), so stores keep them apart from what lists, stats and the topic read."""
        d = self.to_dict()
        state = {k: d.pop(k) for k in FOLD_STATE}
        return (
            json.dumps(d, separators=(",", ":")).encode(),
            json.dumps(state, separators=(",", ":")).encode(),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionSummary:
        return cls.from_dict(json.loads(data))


def _join(ranges: list[list[int]], gap: int) -> list[list[int]]:
    """Sorted [lo, hi] ranges, those overlapping or at most `gap` apart made one."""
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def _overlap(a: list[list[int]], b: list[list[int]]) -> bool:
    """Whether two sorted lists of disjoint ranges share a value."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


def fold_all(
    events: list[dict[str, Any]], summaries: dict[str, SessionSummary] | None = None
) -> dict[str, SessionSummary]:
    """Fold many events (any sessions, any order) into summaries by session id."""
    out = summaries if summaries is not None else {}
    for ev in events:
        sid = ev["session_id"]
        s = out.get(sid)
        if s is None:
            s = out[sid] = SessionSummary(sid)
        s.fold(ev)
    return out
