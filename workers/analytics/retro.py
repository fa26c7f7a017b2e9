"""Retrospective findings on sessions: each rule a small pure function.

A rule takes a session's events (Event field dicts, any order) and its
SessionSummary, plus a `Context` (team figures such as the median cost per
model), and returns Findings: what happened, the evidence (session and seq
range, with a few details) and a suggestion. Rules never raise on odd events;
thresholds are arguments with defaults, so tests can probe both sides.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.analytics.aggregate import SessionSummary, one_copy_per_call

Event = dict[str, Any]
SHELL_TOOLS = frozenset(("Bash", "Shell", "shell", "local_shell", "exec_command"))
EDIT_TOOLS = frozenset(("Edit", "MultiEdit", "Write", "apply_patch", "NotebookEdit", "TabEdit"))
TEST_WORDS = ("test", "pytest", "jest", "vitest", "spec", "check")
DEFAULT_CONTEXT_LIMIT = 200_000


@dataclass(frozen=True)
class Finding:
    rule: str
    session_id: str
    title: str
    first_seq: int
    last_seq: int
    suggestion: str
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "session_id": self.session_id,
            "title": self.title,
            "seq_range": [self.first_seq, self.last_seq],
            "suggestion": self.suggestion,
            "details": list(self.details),
        }


@dataclass
class Context:
    """What rules know beyond one session: team cost per session by main model."""

    session_costs: dict[str, list[float]] = field(default_factory=dict)  # model -> costs
    session_cost: float | None = None  # this session's cost (USD), priced by the caller


def ordered(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.get("ts_ms") or 0, e.get("seq") or 0))


def _payload(event: Event) -> Any:
    try:
        return json.loads(event.get("payload") or "{}")
    except ValueError:
        return {}


def command_of(event: Event) -> str | None:
    """The shell command of a tool call (hooks of each agent, imported transcripts)."""
    p = _payload(event)
    if not isinstance(p, dict):
        return None
    candidates: list[Any] = [
        (p.get("tool_input") or {}).get("command")
        if isinstance(p.get("tool_input"), dict)
        else None,
        p.get("command"),
    ]
    msg = p.get("message")
    if isinstance(msg, dict) and isinstance(msg.get("content"), list):
        for block in msg["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                inp = block.get("input")
                candidates.append(inp.get("command") if isinstance(inp, dict) else None)
    inner = p.get("payload")
    if isinstance(inner, dict) and isinstance(inner.get("arguments"), str):
        try:
            args = json.loads(inner["arguments"])
            candidates.append(args.get("command") if isinstance(args, dict) else None)
        except ValueError:
            pass
    for c in candidates:
        if isinstance(c, list) and c:
            c = " ".join(str(x) for x in c)
        if isinstance(c, str) and c.strip():
            return " ".join(c.split())
    return None


def _calls_with_results(events: list[Event]) -> list[tuple[Event, Event | None]]:
    """Each tool call paired with its result (by tool_call_id, else the next result)."""
    results: dict[str, Event] = {}
    for e in events:
        if e.get("kind") in ("tool_result", "error") and e.get("tool_call_id"):
            results.setdefault(e["tool_call_id"], e)
    out = []
    for e in events:
        if e.get("kind") == "tool_call":
            out.append((e, results.get(e.get("tool_call_id") or "")))
    return out


def _failed(result: Event | None) -> bool:
    if result is None:
        return False
    if result.get("kind") == "error":
        return True
    p = _payload(result)
    if not isinstance(p, dict):
        return False
    response = p.get("tool_response")
    for holder in (p, response if isinstance(response, dict) else {}):
        code = holder.get("exit_code", holder.get("exitCode"))
        if isinstance(code, int) and code != 0:
            return True
    return False


def _span(session: str, events: list[Event]) -> tuple[int, int]:
    seqs = [int(e["seq"]) for e in events if "seq" in e]
    return (min(seqs), max(seqs)) if seqs else (0, 0)


# -- rules -------------------------------------------------------------------


def repeated_failing_command(
    session: str, events: list[Event], summary: SessionSummary, ctx: Context, min_failures: int = 3
) -> list[Finding]:
    failures: dict[str, list[Event]] = {}
    for call, result in _calls_with_results(events):
        if call.get("tool") not in SHELL_TOOLS or not _failed(result):
            continue
        cmd = command_of(call)
        if cmd:
            failures.setdefault(cmd, []).extend([call, result] if result else [call])
    out = []
    for cmd, evs in failures.items():
        n = sum(1 for e in evs if e.get("kind") == "tool_call")
        if n >= min_failures:
            lo, hi = _span(session, evs)
            out.append(
                Finding(
                    "repeated-failing-command",
                    session,
                    f"`{cmd[:80]}` failed {n} times",
                    lo,
                    hi,
                    "Stop and read the first failure's output; fix the cause (or tell the "
                    "agent what the command needs) instead of rerunning it.",
                    (cmd,),
                )
            )
    return out


def _is_test(cmd: str | None) -> bool:
    return cmd is not None and any(w in cmd.lower() for w in TEST_WORDS)


def edit_test_loop(
    session: str, events: list[Event], summary: SessionSummary, ctx: Context, min_rounds: int = 3
) -> list[Finding]:
    """Edits followed by a failing test run, again and again, with no passing run after."""
    rounds: list[Event] = []
    edited = False
    best: list[Event] = []
    for call, result in _calls_with_results(events):
        tool = call.get("tool")
        if tool in EDIT_TOOLS:
            edited = True
            rounds.append(call)
            continue
        if tool in SHELL_TOOLS and _is_test(command_of(call)):
            if not _failed(result):
                rounds, edited, best = [], False, []  # converged in the end
                continue
            if edited:
                rounds += [call] + ([result] if result else [])
                edited = False
                if sum(1 for e in rounds if e.get("tool") in SHELL_TOOLS) >= min_rounds:
                    best = list(rounds)
    if not best:
        return []
    n = sum(1 for e in best if e.get("tool") in SHELL_TOOLS and e.get("kind") == "tool_call")
    lo, hi = _span(session, best)
    return [
        Finding(
            "edit-test-loop",
            session,
            f"{n} edit-then-failing-test rounds without a passing run",
            lo,
            hi,
            "The fix is not converging: have the agent state why the test fails before the "
            "next edit, or narrow the test to the failing case.",
        )
    ]


def tool_errors(
    session: str,
    events: list[Event],
    summary: SessionSummary,
    ctx: Context,
    min_failures: int = 3,
    min_rate: float = 0.3,
) -> list[Finding]:
    out = []
    for tool, failed in sorted(summary.tool_failures.items()):
        calls = summary.tool_calls.get(tool, failed)
        rate = failed / calls if calls else 1.0
        if failed >= min_failures or (failed >= 2 and rate >= min_rate):
            evs = [
                e
                for e in events
                if e.get("kind") == "error" and (e.get("tool") == tool or tool == "?")
            ]
            lo, hi = _span(session, evs)
            out.append(
                Finding(
                    "tool-errors",
                    session,
                    f"{tool}: {failed} of {calls} calls failed ({rate:.0%})",
                    lo,
                    hi,
                    f"Check how {tool} is set up for this workspace (permissions, paths, "
                    "missing dependencies); repeated tool errors cost a round trip each.",
                )
            )
    return out


def context_pressure(
    session: str, events: list[Event], summary: SessionSummary, ctx: Context, ratio: float = 0.8
) -> list[Finding]:
    limit = summary.context_max or DEFAULT_CONTEXT_LIMIT
    used = summary.context_peak / limit if limit else 0.0
    if used < ratio and summary.compactions == 0:
        return []
    marks = [
        e
        for e in events
        if (
            e.get("kind") == "cost"
            and (e.get("context_used_tokens") or _prompt(e)) >= ratio * limit
        )
        or "ompact" in (e.get("payload") or "")
    ]
    lo, hi = _span(session, marks or events)
    return [
        Finding(
            "context-pressure",
            session,
            f"context peaked at {summary.context_peak:,} of {limit:,} tokens ({used:.0%}), "
            f"{summary.compactions} compaction(s)",
            lo,
            hi,
            "Split the task into smaller sessions, or point the agent at fewer and smaller "
            "files; compaction loses detail the agent may need later.",
        )
    ]


def _prompt(e: Event) -> int:
    return int(
        (e.get("tokens_in") or 0)
        + (e.get("cache_creation_tokens") or 0)
        + (e.get("cache_read_tokens") or 0)
    )


def main_model(summary: SessionSummary) -> str | None:
    by_tokens: dict[str, int] = {}
    for key, vals in summary.usage.items():
        model = key.split("\t")[0]
        by_tokens[model] = by_tokens.get(model, 0) + sum(vals)
    if not by_tokens:
        return None
    return max(by_tokens, key=lambda m: by_tokens[m])


def cost_outlier(
    session: str,
    events: list[Event],
    summary: SessionSummary,
    ctx: Context,
    factor: float = 3.0,
    min_peers: int = 5,
) -> list[Finding]:
    model = main_model(summary)
    if model is None or ctx.session_cost is None:
        return []
    peers = ctx.session_costs.get(model, [])
    if len(peers) < min_peers:
        return []
    median = statistics.median(peers)
    if median <= 0 or ctx.session_cost < factor * median:
        return []
    costs = [e for e in events if e.get("kind") == "cost"]
    lo, hi = _span(session, costs or events)
    return [
        Finding(
            "cost-outlier",
            session,
            f"cost ${ctx.session_cost:.2f} is {ctx.session_cost / median:.1f}x the team median "
            f"${median:.2f} for {model}",
            lo,
            hi,
            "Look at where the tokens went (large files read, long tool output, many retries); "
            "a cheaper model may do the routine parts.",
        )
    ]


def long_idle_gaps(
    session: str,
    events: list[Event],
    summary: SessionSummary,
    ctx: Context,
    min_gap_ms: int = 30 * 60 * 1000,
) -> list[Finding]:
    evs = ordered(events)
    gaps = [
        (a, b)
        for a, b in itertools.pairwise(evs)
        if (b.get("ts_ms") or 0) - (a.get("ts_ms") or 0) >= min_gap_ms
    ]
    if not gaps:
        return []
    details = tuple(
        f"{((b['ts_ms'] - a['ts_ms']) / 60000):.0f} min idle after seq {a['seq']}" for a, b in gaps
    )
    total = sum(b["ts_ms"] - a["ts_ms"] for a, b in gaps)
    return [
        Finding(
            "long-idle-gaps",
            session,
            f"{len(gaps)} idle gap(s) of {min_gap_ms // 60000}+ min, "
            f"{total / 60000:.0f} min in all",
            int(gaps[0][0]["seq"]),
            int(gaps[-1][1]["seq"]),
            "Was the agent waiting on a prompt or a permission? Notifications for permission "
            "prompts, or allow-listing safe commands, keep it moving.",
            details,
        )
    ]


def permission_denials(
    session: str, events: list[Event], summary: SessionSummary, ctx: Context, min_requests: int = 5
) -> list[Finding]:
    if summary.permission_denials == 0 and summary.permission_requests < min_requests:
        return []
    marks = [
        e
        for e in events
        if "PermissionRequest" in (e.get("payload") or "")
        or "want to proceed" in (e.get("payload") or "")
        or "denied" in (e.get("payload") or "").lower()
    ]
    lo, hi = _span(session, marks or events)
    return [
        Finding(
            "permission-friction",
            session,
            f"{summary.permission_denials} permission denial(s), "
            f"{summary.permission_requests} permission prompt(s)",
            lo,
            hi,
            "Allow-list the commands you always approve, and deny the ones you always refuse "
            "in the agent's settings, so neither costs a round trip.",
        )
    ]


Rule = Callable[[str, list[Event], SessionSummary, Context], list[Finding]]
RULES: tuple[Rule, ...] = (
    repeated_failing_command,
    edit_test_loop,
    tool_errors,
    context_pressure,
    cost_outlier,
    long_idle_gaps,
    permission_denials,
)


def retro(
    events: Iterable[Event], summary: SessionSummary | None = None, ctx: Context | None = None
) -> list[Finding]:
    """Every rule's findings for one session's events (a tool call reported by both its
    hook and its imported transcript line is looked at once)."""
    every = ordered(events)
    evs = one_copy_per_call(every)
    if not evs:
        return []
    session = str(evs[0]["session_id"])
    if summary is None:
        summary = SessionSummary(session)
        for e in every:
            summary.fold(e)
    ctx = ctx or Context()
    out: list[Finding] = []
    for rule in RULES:
        out += rule(session, evs, summary, ctx)
    return out
