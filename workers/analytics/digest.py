"""StatsRow: the few fields of a SessionSummary that `stats` reads, and their compact bytes. Pure.

`kaizen-stream stats` over 100k sessions cannot afford to parse every full
summary (events by kind, tool maps, active intervals, ...): the SummaryStore
keeps, beside each summary and in the same WriteBatch, this row of it, and
stats reads only the rows.

Invariants (this module owns them):

- A row is a function of its summary (`digest`): never folded on its own, so
  it cannot drift from the summary it was written with.
- Cost stays out: the row keeps the cost inputs (`usage`, tokens per model,
  UTC day and context class) and readers price them when read, like the
  summary (workers/analytics/cost.py).
- The bytes are a JSON array whose first element is ROW_VERSION; `decode`
  refuses any other version (ValueError), so a changed layout is rebuilt from
  the summaries instead of being misread.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from workers.analytics.aggregate import SessionSummary
from workers.analytics.retro import main_model

ROW_VERSION = 1


class StatsRow(NamedTuple):
    session_id: str
    agent: str | None
    workspace: str | None
    host: str | None
    first_ts: int | None
    last_ts: int | None
    model: str | None  # the session's main model: most tokens (retro.main_model)
    events: int
    tool_calls: int
    failures: int
    active_ms: int
    usage: dict[str, list[int]]  # SessionSummary.usage: usage_key -> [in, out, cw, cr]


def digest(summary: SessionSummary) -> StatsRow:
    return StatsRow(
        summary.session_id,
        summary.agent,
        summary.workspace,
        summary.host,
        summary.first_ts,
        summary.last_ts,
        main_model(summary),
        summary.event_count,
        sum(summary.tool_calls.values()),
        summary.failures,
        summary.active_ms,
        {k: list(v) for k, v in summary.usage.items()},
    )


def encode(row: StatsRow) -> bytes:
    return json.dumps([ROW_VERSION, *row], separators=(",", ":")).encode()


def decode(data: bytes) -> StatsRow:
    fields: list[Any] = json.loads(data)
    if not fields or fields[0] != ROW_VERSION or len(fields) != len(StatsRow._fields) + 1:
        raise ValueError(f"not a version {ROW_VERSION} stats row")
    return StatsRow._make(fields[1:])
