"""Per-session summaries: fold Event fields into a SessionSummary. Pure.

Invariants (this module owns them; docs/ARCHITECTURE.md names it):

- Idempotent per (session_id, producer, seq): a summary remembers the seqs it
  folded (as ranges, one list per producer: `seqs` for producer "", `produced`
  for the others), and folding an event whose key it holds changes nothing. So
  a redelivered event, or one read twice by live capture and `import` (same
  key, workers/hooks/usage.py), counts once, while two machines' events of one
  session (each spool numbers from 0) all count.
- One tool call counts once, whichever sources report it: a session both
  hooked and imported has two events for each tool call (the hook's
  PreToolUse and the transcript's tool_use line, under different seqs) and
  two for its result. Tool calls, tool failures, tool errors and permission
  denials are counted per tool call id (`tool_views`: call id -> what was
  counted of it and its tool), so the second copy counts nothing, and a call
  one copy reports as failed counts as failed whichever copy comes first.
  What has no shared id is counted per source class (live hooks vs import,
  `by_source`) and the larger count is the session's: compactions (PreCompact
  vs compact_boundary lines), subagents (SubagentStart vs distinct Task/Agent
  calls) and errors that are no tool's (StopFailure vs API error lines).
  `events` counts the events themselves, by kind: both copies are stored
  and replayed, so it agrees with replay.
- Order-free: folding the same set of events in any order gives an equal
  summary (active time is kept as merged intervals, not as a running sum).
- Mergeable: `merge(a, b)` of summaries over disjoint seqs and disjoint tool
  calls equals the summary of all their events; overlapping seqs or tool
  calls are refused (ValueError), never summed.
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
from typing import Any, NamedTuple

# what a stored summary was folded by: stores refold from the log when it changes
# (2: tool calls counted once per call id, counts per source class)
FOLD_VERSION = 2
IDLE_MS = 5 * 60 * 1000  # a gap longer than this between events is idle, not active time
LARGE_CONTEXT = 200_000  # prompt tokens above which providers charge their long-context tier
TOKEN_FIELDS = (
    ("in", "tokens_in"),
    ("out", "tokens_out"),
    ("cache_write", "cache_creation_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("reasoning", "reasoning_tokens"),
)
SUBAGENT_TOOLS = frozenset(("Task", "Agent"))
# see SessionSummary.split_bytes
FOLD_STATE = ("seqs", "produced", "tool_views", "by_source")
# what was counted of one tool call (tool_views bits); LIVE: its tool name came from a
# live copy (hook), which wins over a transcript's (Codex: hook "Bash", rollout "shell")
CALL, RESULT, FAILED, DENIED, LIVE = 1, 2, 4, 8, 16
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
    if not counter[key]:
        del counter[key]


def source_class(event: dict[str, Any]) -> str:
    """'import' for transcript lines, 'live' for what hooks (and live capture) sent."""
    return "import" if event.get("source") == "import" else "live"


class Counted(NamedTuple):
    """What one fold added: tool calls and tool failures (for the Prometheus counters)."""

    calls: int = 0
    failures: int = 0


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
    # tool_call_id -> [CALL|RESULT|FAILED|ORPHAN|DENIED bits, its tool or None]
    tool_views: dict[str, list[Any]] = field(default_factory=dict)
    # counts behind errors, subagents and compactions (see `_settle`)
    by_source: dict[str, int] = field(default_factory=dict)

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

    def fold(self, event: dict[str, Any]) -> Counted | None:
        """Count one event; None (and nothing changed) when its seq was already counted,
        else the tool calls and failures it added (a tuple, true even when both are 0)."""
        producer = event.get("producer") or ""
        ranges = self.produced.setdefault(producer, []) if producer else self.seqs
        if not _add_range(ranges, int(event["seq"])):
            return None
        counted = Counted()
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
            counted = Counted(calls=self._fold_call(event))
        elif kind in ("tool_result", "error"):
            counted = Counted(failures=self._fold_result(event, kind))
        elif kind in ("lifecycle", "hook"):
            self._fold_lifecycle(event)
        return counted

    def _count(self, key: str) -> None:
        """Count one of the things kept per source (`by_source`), and settle the totals."""
        _bump(self.by_source, key)
        self._settle()

    def _settle(self) -> None:
        """The counts with no shared identity across sources: the larger source's."""
        b = self.by_source
        self.errors = b.get("errors:tool", 0) + max(
            b.get("errors:live", 0), b.get("errors:import", 0)
        )
        self.subagents = max(b.get("subagents:start", 0), b.get("subagents:call", 0))
        self.compactions = max(b.get("compactions:live", 0), b.get("compactions:import", 0))

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

    def _fold_call(self, event: dict[str, Any]) -> int:
        """Count a tool call unless another copy of it (same call id) was counted; 0 or 1."""
        call_id = event.get("tool_call_id")
        if not call_id:
            tool = event.get("tool") or "?"
        else:
            view = self.tool_views.setdefault(call_id, [0, None])
            self._name(view, event)
            if view[0] & CALL:
                return 0  # the same call from the other source (hook vs transcript)
            view[0] |= CALL
            tool = view[1] or "?"
        _bump(self.tool_calls, tool)
        if tool in SUBAGENT_TOOLS:
            self._count("subagents:call")
        return 1

    def _name(self, view: list[Any], event: dict[str, Any]) -> None:
        """Name a call's tool from one copy: the first name, or a live copy's over a
        transcript's; what the call counted so far moves to the new name."""
        tool = event.get("tool")
        if not tool:
            return
        live = source_class(event) == "live"
        if view[1] is not None and (view[1] == tool or view[0] & LIVE or not live):
            if live and view[1] == tool:
                view[0] |= LIVE
            return
        old = view[1] or "?"
        view[1] = tool
        view[0] |= LIVE if live else 0
        self._move(view[0], old, tool)

    def _move(self, bits: int, old: str, new: str) -> None:
        """Move one call's counts (its call, its failure) from tool `old` to `new`."""
        if bits & CALL:
            _bump(self.tool_calls, old, -1)
            _bump(self.tool_calls, new)
        if bits & FAILED:
            _bump(self.tool_failures, old, -1)
            _bump(self.tool_failures, new)

    def _fold_result(self, event: dict[str, Any], kind: str) -> int:
        """Count a tool result or error once per call id; the failures it added (0 or 1)."""
        call_id = event.get("tool_call_id")
        view = self.tool_views.setdefault(call_id, [0, None]) if call_id else None
        if view is not None:
            self._name(view, event)
            view[0] |= RESULT
        payload = event.get("payload") or ""
        if any(mark in payload for mark in _DENIAL_MARKS):
            if view is None:
                self.permission_denials += 1
            elif not view[0] & DENIED:
                view[0] |= DENIED
                self.permission_denials += 1
        if kind != "error":
            return 0
        if view is None:  # no call id: nothing to match another copy by
            tool = event.get("tool")
            if tool:
                _bump(self.tool_failures, tool)
                self._count("errors:tool")
                return 1
            self._count(f"errors:{source_class(event)}")
            return 0
        if view[0] & FAILED:
            return 0  # the other copy of this result said so already
        view[0] |= FAILED  # whichever copy says it failed: it failed
        self._count("errors:tool")
        _bump(self.tool_failures, view[1] or "?")  # moves when a copy names the tool
        return 1

    def _fold_lifecycle(self, event: dict[str, Any]) -> None:
        payload = event.get("payload") or ""
        if '"hook_event_name":"PermissionRequest"' in payload:
            self.permission_requests += 1
        elif any(mark in payload for mark in _SUBAGENT_MARKS):
            self._count("subagents:start")
        elif any(mark in payload for mark in _COMPACT_MARKS):
            self._count(f"compactions:{source_class(event)}")

    # -- merging and storage ----------------------------------------------

    def merge(self, other: SessionSummary) -> SessionSummary:
        """The summary of both event sets; ValueError when they share a seq, or both
        counted one tool call (or its failure or denial): a sum would count it twice."""
        if other.session_id != self.session_id:
            raise ValueError(f"cannot merge sessions {self.session_id!r} and {other.session_id!r}")
        if _overlap(self.seqs, other.seqs) or any(
            _overlap(self.produced.get(p, []), r) for p, r in other.produced.items()
        ):
            raise ValueError(f"summaries of {self.session_id!r} share seqs: not disjoint")
        for call_id, (bits, _tool) in other.tool_views.items():
            mine = self.tool_views.get(call_id)
            if mine is not None and mine[0] & bits & (CALL | FAILED | DENIED):
                raise ValueError(f"summaries of {self.session_id!r} share tool call {call_id!r}")
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
        for k, n in other.by_source.items():
            _bump(out.by_source, k, n)
        out.permission_requests += other.permission_requests
        out.permission_denials += other.permission_denials
        out.context_peak = max(out.context_peak, other.context_peak)
        out.context_max = max(out.context_max, other.context_max)
        for call_id, (bits, tool) in other.tool_views.items():
            view = out.tool_views.get(call_id)
            if view is None:
                out.tool_views[call_id] = [bits, tool]
                continue
            # each side counted this call under its own name: both move to the one name
            # a fold of all copies would give (a live copy's, else the first known)
            if tool is not None and (view[1] is None or (bits & LIVE and not view[0] & LIVE)):
                out._move(view[0], view[1] or "?", tool)
                view[1] = tool
            elif tool != view[1]:
                out._move(bits, tool or "?", view[1] or "?")
            view[0] |= bits
        out._settle()
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
            "tool_views": {k: list(v) for k, v in self.tool_views.items()},
            "by_source": dict(self.by_source),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionSummary:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def split_bytes(self) -> tuple[bytes, bytes]:
        """(what readers need, the fold state): the seqs folded, the tool calls seen and
        the counts per source only matter to later folds, and grow with the session (one
        range per usage event, one entry per tool call), so stores keep them apart from
        what lists, stats and the topic read."""
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


def one_copy_per_call(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`events` in order, with one copy of each tool call and one of its result left.

    For readers that walk events rather than a summary (retro rules, the timeline): a
    session both hooked and imported holds each call twice. The call copy kept is a live
    one if any (its tool name wins, as in the summary), the result copy kept is one that
    failed if any (a call one copy reports as failed failed), then a live one.
    """

    def rank(e: dict[str, Any]) -> tuple[int, int]:
        return (e.get("kind") != "error", source_class(e) != "live")

    keep: dict[tuple[str, bool], int] = {}  # (call id, is result) -> index of the copy kept
    for i, e in enumerate(events):
        kind = e.get("kind")
        call_id = e.get("tool_call_id")
        if not call_id or kind not in ("tool_call", "tool_result", "error"):
            continue
        key = (call_id, kind != "tool_call")
        j = keep.get(key)
        if j is None or rank(e) < rank(events[j]):
            keep[key] = i
    kept = set(keep.values())
    return [
        e
        for i, e in enumerate(events)
        if i in kept
        or not e.get("tool_call_id")
        or e.get("kind") not in ("tool_call", "tool_result", "error")
    ]


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
