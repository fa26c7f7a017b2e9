"""Session rows and totals for `sessions` and `stats`: filters, sorting, grouping. Pure.

A SessionRow is what a list shows of one SessionSummary, its cost priced at
read time. `totals_by` groups summaries (`totals_of_rows`: their stats rows,
workers/analytics/digest.py) by model, agent, workspace, host or UTC day;
tokens and cost split exactly by model and day (from the cost-input buckets),
while session counts, tool calls and failures go to the session's main model
and its first day.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.analytics.aggregate import SessionSummary, one_copy_per_call, split_usage_key
from workers.analytics.cost import price_usage
from workers.analytics.digest import StatsRow, digest
from workers.analytics.prices import PriceBook
from workers.analytics.retro import main_model

SORT_KEYS = ("last", "cost", "tokens", "duration", "failures")
GROUP_KEYS = ("model", "agent", "workspace", "host", "day")


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    agent: str | None
    model: str | None
    workspace: str | None
    host: str | None
    first_ts: int | None
    last_ts: int | None
    active_ms: int
    events: int
    tokens: int
    cost_usd: float
    unpriced: tuple[str, ...]  # models whose tokens no price source knows
    tool_calls: int
    failures: int
    errors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "agent": self.agent,
            "model": self.model,
            "workspace": self.workspace,
            "host": self.host,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "active_ms": self.active_ms,
            "events": self.events,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_models": list(self.unpriced),
            "tool_calls": self.tool_calls,
            "failures": self.failures,
            "errors": self.errors,
        }


def row(summary: SessionSummary, book: PriceBook) -> SessionRow:
    cost = price_usage(summary.usage, book)
    return SessionRow(
        summary.session_id,
        summary.agent,
        main_model(summary) or (max(summary.models, key=summary.models.__getitem__, default=None)),
        summary.workspace,
        summary.host,
        summary.first_ts,
        summary.last_ts,
        summary.active_ms,
        summary.event_count,
        summary.total_tokens,
        cost.usd,
        tuple(sorted(cost.unknown)),
        sum(summary.tool_calls.values()),
        summary.failures,
        summary.errors,
    )


def keep(
    r: SessionRow,
    *,
    agent: str | None = None,
    model: str | None = None,
    workspace: str | None = None,
    host: str | None = None,
    since_ms: int | None = None,
) -> bool:
    """Whether a row passes the filters (model and workspace match by substring)."""
    if agent and r.agent != agent:
        return False
    if model and model not in (r.model or ""):
        return False
    if workspace and workspace not in (r.workspace or ""):
        return False
    if host and r.host != host:
        return False
    return since_ms is None or active_since(r.last_ts, since_ms)


def active_since(last_ts: int | None, since_ms: int) -> bool:
    """What every --since means for a session: active at or after since_ms (a session
    without a timestamp counts as last active at the epoch)."""
    return (last_ts or 0) >= since_ms


def sort_rows(rows: list[SessionRow], key: str) -> list[SessionRow]:
    """Largest first by `key` (one of SORT_KEYS)."""
    pick = {
        "last": lambda r: r.last_ts or 0,
        "cost": lambda r: r.cost_usd,
        "tokens": lambda r: r.tokens,
        "duration": lambda r: r.active_ms,
        "failures": lambda r: r.failures,
    }[key]
    return sorted(rows, key=pick, reverse=True)


@dataclass
class Totals:
    sessions: int = 0
    events: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_tokens: int = 0
    tool_calls: int = 0
    failures: int = 0
    active_ms: int = 0
    unpriced_models: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "events": self.events,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_tokens": self.unpriced_tokens,
            "unpriced_models": sorted(self.unpriced_models),
            "tool_calls": self.tool_calls,
            "failures": self.failures,
            "active_ms": self.active_ms,
        }


def _day(ts: int | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime((ts or 0) / 1000))


def last_day(r: StatsRow) -> str:
    """The UTC day a session was last active on (where the day-keyed rollups file it)."""
    return _day(r.last_ts)


def last_day_of_ms(ts_ms: int) -> str:
    """The UTC day of an instant: the first day `--since ts_ms` reads."""
    return _day(ts_ms)


def totals_by(summaries: Iterable[SessionSummary], by: str, book: PriceBook) -> dict[str, Totals]:
    """Totals per group (`by` one of GROUP_KEYS), over every summary given."""
    return totals_of_rows((digest(s) for s in summaries), by, book)


def totals_of_rows(rows: Iterable[StatsRow], by: str, book: PriceBook) -> dict[str, Totals]:
    """Totals per group (`by` one of GROUP_KEYS), over the stats rows of sessions."""
    return price_rollup(rollup_rows(rows, by), by, book)


@dataclass
class Rollup:
    """Unpriced totals of many rows grouped one way: additive, so a store keeps it up to
    date by adding a changed session's new row and subtracting its old one."""

    # group -> [sessions, events, tool calls, failures, active ms]
    homes: dict[str, list[int]] = field(default_factory=dict)
    # summed [in, out, cw, cr] per usage key (by model or day: the key names the group)
    # or per "group<TAB>usage key"; priced once each, as rates depend on model, day, class
    buckets: dict[str, list[int]] = field(default_factory=dict)

    def add(self, other: Rollup, sign: int = 1) -> None:
        for mine, theirs in ((self.homes, other.homes), (self.buckets, other.buckets)):
            for k, vals in theirs.items():
                _add_into(mine, k, vals, sign)

    def add_cell(self, home: bool, name: str, vals: list[int]) -> None:
        """Add one stored cell: a group's counts (home) or a usage bucket."""
        _add_into(self.homes if home else self.buckets, name, vals, 1)


def _add_into(into: dict[str, list[int]], key: str, vals: list[int], sign: int) -> None:
    acc = into.get(key)
    if acc is None:
        into[key] = [sign * v for v in vals]
    else:
        for i, v in enumerate(vals):
            acc[i] += sign * v


def rollup_rows(
    rows: Iterable[StatsRow], by: str, sign: int = 1, into: Rollup | None = None
) -> Rollup:
    """The Rollup of rows grouped `by` (one of GROUP_KEYS); sign -1 takes them out of `into`."""
    if by not in GROUP_KEYS:
        raise ValueError(f"cannot group by {by!r}: one of {', '.join(GROUP_KEYS)}")
    out = into if into is not None else Rollup()
    by_key = by in ("model", "day")
    for r in rows:
        if by == "model":
            home = r.model or "?"
        elif by == "day":
            home = _day(r.first_ts)
        else:
            home = getattr(r, by) or "?"
        _add_into(out.homes, home, [1, r.events, r.tool_calls, r.failures, r.active_ms], sign)
        for key, vals in r.usage.items():
            _add_into(out.buckets, key if by_key else f"{home}\t{key}", vals, sign)
    return out


def price_rollup(rollup: Rollup, by: str, book: PriceBook) -> dict[str, Totals]:
    """Totals per group of a Rollup, its tokens priced now (prices in force on their days)."""
    out: dict[str, Totals] = {}
    for home, (sessions, events, tool_calls, failures, active_ms) in rollup.homes.items():
        if sessions:
            out[home] = Totals(sessions, events, 0, 0.0, 0, tool_calls, failures, active_ms)
    for at, vals in rollup.buckets.items():
        if by in ("model", "day"):
            key = at
            model, day, _large = split_usage_key(key)
            group = (model or "?") if by == "model" else day
        else:
            group, key = at.split("\t", 1)
        if not any(vals):
            continue
        g = out.setdefault(group, Totals())
        priced = price_usage({key: vals}, book)
        g.tokens += sum(vals)
        g.cost_usd += priced.usd
        for name, n in priced.unknown.items():
            g.unpriced_tokens += n
            g.unpriced_models.add(name)
    return out


def cost_by_day_and_model(
    summaries: Iterable[SessionSummary], book: PriceBook
) -> dict[str, dict[str, float]]:
    """UTC day -> model -> cost (USD), from the cost-input buckets priced when read."""
    buckets: dict[str, list[int]] = {}
    for s in summaries:
        for key, vals in s.usage.items():
            acc = buckets.setdefault(key, [0, 0, 0, 0])
            for i, v in enumerate(vals):
                acc[i] += v
    out: dict[str, dict[str, float]] = {}
    for key, vals in buckets.items():
        model, day, _large = split_usage_key(key)
        usd = price_usage({key: vals}, book).usd
        per_model = out.setdefault(day, {})
        per_model[model or "?"] = per_model.get(model or "?", 0.0) + usd
    return dict(sorted(out.items()))


def tool_failure_rates(summaries: Iterable[SessionSummary]) -> dict[str, dict[str, float]]:
    """tool -> {calls, failures, rate}, most failing first."""
    calls: dict[str, int] = {}
    failed: dict[str, int] = {}
    for s in summaries:
        for tool, n in s.tool_calls.items():
            calls[tool] = calls.get(tool, 0) + n
        for tool, n in s.tool_failures.items():
            failed[tool] = failed.get(tool, 0) + n
    rows = {
        tool: {
            "calls": calls.get(tool, 0),
            "failures": failed.get(tool, 0),
            "rate": failed.get(tool, 0) / max(calls.get(tool, 0), failed.get(tool, 0), 1),
        }
        for tool in set(calls) | set(failed)
    }
    return dict(sorted(rows.items(), key=lambda kv: (-kv[1]["rate"], kv[0])))


def timeline(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A session's events for a timeline: tool calls paired with their results.

    One item per event that is not a tool result; a tool call carries its
    result's seq, duration (ms) and whether it failed. Results without a call
    (e.g. a call outside the events given) are items of their own. A call
    reported by both its hook and its imported transcript line is one item.
    """
    evs = one_copy_per_call(sorted(events, key=lambda e: (e.get("ts_ms") or 0, e.get("seq") or 0)))
    results = {
        e["tool_call_id"]: e
        for e in evs
        if e.get("kind") in ("tool_result", "error") and e.get("tool_call_id")
    }
    paired: set[int] = set()
    out: list[dict[str, Any]] = []
    for e in evs:
        kind = e.get("kind")
        item: dict[str, Any] = {
            "seq": e.get("seq"),
            "ts_ms": e.get("ts_ms"),
            "kind": kind,
            "tool": e.get("tool"),
            "error": kind == "error",
        }
        if kind == "tool_call":
            result = results.get(e.get("tool_call_id") or "")
            if result is not None:
                paired.add(id(result))
                item["result_seq"] = result.get("seq")
                item["duration_ms"] = (result.get("ts_ms") or 0) - (e.get("ts_ms") or 0)
                item["error"] = result.get("kind") == "error"
                item["tool"] = item["tool"] or result.get("tool")
        elif id(e) in paired:
            continue
        out.append(item)
    # results seen before their call was paired: drop those that got paired later
    return [i for i in out if not (i["kind"] in ("tool_result", "error") and _paired(i, out))]


def _paired(item: dict[str, Any], items: list[dict[str, Any]]) -> bool:
    return any(o.get("result_seq") == item["seq"] for o in items if o["kind"] == "tool_call")
