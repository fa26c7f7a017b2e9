"""Prometheus counters by agent and model: tokens, cost, tool calls, tool failures.

Counted as the worker folds events into session summaries (workers/analytics/store.py),
so each event counts once per worker process; like every Prometheus counter they
start from zero when the process starts (rate() handles the reset). Cost is
priced when the event is folded, with the price in force on the event's day
(workers/analytics/prices.py); tokens of a model no price source knows are
counted under `kaizen_unpriced_tokens_total`, never as zero cost. Tool calls
and failures are what the fold counted (`Counted`): a tool call reported by
both its hook and its imported transcript line counts once, as in the summary.
They carry no model of their own in hook events: they count under the
session's most used model so far ("unknown" before any).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date
from typing import Any

from workers.analytics.aggregate import LARGE_CONTEXT, TOKEN_FIELDS, Counted, SessionSummary
from workers.analytics.prices import PriceBook

Key = tuple[str, str]  # (agent, model)
_TOKEN_KINDS = tuple(short for short, _ in TOKEN_FIELDS)


class UsageCounters:
    """Counters of one partition's folds."""

    def __init__(self, book: PriceBook | None = None) -> None:
        self.book = book
        self.tokens: dict[tuple[str, str, str], int] = {}  # (agent, model, kind) -> tokens
        self.cost: dict[Key, float] = {}
        self.unpriced: dict[Key, int] = {}
        self.tool_calls: dict[Key, int] = {}
        self.tool_failures: dict[Key, int] = {}

    def count(self, event: dict[str, Any], summary: SessionSummary, counted: Counted) -> None:
        """Count one event just folded into `summary` (`counted`: what that fold added)."""
        kind = event.get("kind")
        agent = event.get("agent") or summary.agent or "other"
        if kind == "cost":
            model = event.get("model") or "unknown"
            values = [event.get(name) or 0 for _, name in TOKEN_FIELDS]
            for short, v in zip(_TOKEN_KINDS, values, strict=True):
                if v:
                    k3 = (agent, model, short)
                    self.tokens[k3] = self.tokens.get(k3, 0) + v
            tin, tout, cw, cr = values[:4]
            day = date.fromisoformat(
                time.strftime("%Y-%m-%d", time.gmtime((event.get("ts_ms") or 0) / 1000))
            )
            book = self.book or PriceBook.from_env()
            self.book = book
            rates = book.rates(model, day, tin + cw + cr > LARGE_CONTEXT)
            key = (agent, model)
            if rates is None:
                self.unpriced[key] = self.unpriced.get(key, 0) + tin + tout + cw + cr
            else:
                self.cost[key] = self.cost.get(key, 0.0) + rates.cost(tin, tout, cw, cr)
            return
        if not (counted.calls or counted.failures):
            return
        models = summary.models
        model = max(models, key=models.__getitem__) if models else "unknown"
        key = (agent, model)
        if counted.calls:
            self.tool_calls[key] = self.tool_calls.get(key, 0) + counted.calls
        if counted.failures:
            self.tool_failures[key] = self.tool_failures.get(key, 0) + counted.failures


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render(all_counters: Iterable[UsageCounters]) -> str:
    """Prometheus text of the counters of every partition, summed by their labels."""
    tokens: dict[tuple[str, str, str], int] = {}
    sums: dict[str, dict[Key, float]] = {
        "cost": {},
        "unpriced": {},
        "tool_calls": {},
        "tool_failures": {},
    }
    for c in all_counters:
        for k3, v in c.tokens.items():
            tokens[k3] = tokens.get(k3, 0) + v
        for name, table in sums.items():
            for key, n in getattr(c, name).items():
                table[key] = table.get(key, 0) + n
    out = [
        "# HELP kaizen_tokens_total tokens of the usage events folded, by kind",
        "# TYPE kaizen_tokens_total counter",
    ]
    for (agent, model, kind), v in sorted(tokens.items()):
        labels = f'agent="{_label(agent)}",model="{_label(model)}",kind="{kind}"'
        out.append(f"kaizen_tokens_total{{{labels}}} {v}")
    for name, metric, text in (
        ("cost", "kaizen_cost_usd_total", "cost of those tokens (USD, price of the event's day)"),
        ("unpriced", "kaizen_unpriced_tokens_total", "tokens of models no price source knows"),
        ("tool_calls", "kaizen_tool_calls_total", "tool calls folded"),
        ("tool_failures", "kaizen_tool_failures_total", "failed tool calls folded"),
    ):
        out.append(f"# HELP {metric} {text}")
        out.append(f"# TYPE {metric} counter")
        for (agent, model), amount in sorted(sums[name].items()):
            value = f"{amount:.6f}" if name == "cost" else str(int(amount))
            out.append(f'{metric}{{agent="{_label(agent)}",model="{_label(model)}"}} {value}')
    return "\n".join(out) + "\n"
