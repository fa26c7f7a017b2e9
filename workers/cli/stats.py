"""`kaizen-stream stats --by model|agent|workspace|host|day`: totals over the local sessions.

Reads every partition's rollup for the grouping asked (read-only while a
worker runs; workers/analytics/store.py), with --since (sessions last active
at or after it) the day-keyed rollups of the later days plus the stats rows
(workers/analytics/digest.py) of the sessions last active on since's day,
never the full summaries; and
prices the tokens at read time (workers/analytics/prices.py). Tokens and cost split
exactly by model and by day; sessions, tool calls and failures go to a
session's main model and first day. Tokens of models no price source knows are
shown apart, never priced at zero.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from workers.analytics.views import GROUP_KEYS
from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, settings_from
from workers.cli.sessions import partition_dirs
from workers.settings import SESSIONS_TOPIC

if TYPE_CHECKING:
    from workers.analytics.digest import StatsRow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, partitions=False)
    parser.add_argument("--by", choices=GROUP_KEYS, default="model")
    parser.add_argument("--since", help="only sessions active since then (7d, 12h, ISO time)")
    parser.add_argument("--json", action="store_true", help="one JSON object per group")
    parser.add_argument(
        "--team", action="store_true", help=f"every worker's sessions, from {SESSIONS_TOPIC}"
    )


def run(args: argparse.Namespace) -> int:
    from workers.analytics.prices import PriceBook, PricesFileError
    from workers.analytics.store import SummaryStore
    from workers.analytics.views import Rollup, active_since, price_rollup, rollup_rows
    from workers.replay.timespec import parse_time_ms

    try:
        since = parse_time_ms(args.since) if args.since else None
        book = PriceBook.from_env()
    except (ValueError, PricesFileError) as exc:
        raise CliError(str(exc)) from None
    settings = settings_from(args)
    if args.team:
        import asyncio

        from workers.analytics.digest import digest
        from workers.analytics.team import read_team

        try:
            team = asyncio.run(read_team(settings.kafka)).values()
        except Exception as exc:
            raise CliError(f"cannot read {SESSIONS_TOPIC} from {settings.broker}: {exc}") from None
        rows: Iterable[StatsRow] | None = map(digest, team)
        where = f"{SESSIONS_TOPIC} at {settings.broker}"
    else:
        dirs = [d for _, d in partition_dirs(settings.hotlog_dir)]
        if not dirs:
            raise CliError(
                f"no partitions in {settings.hotlog_dir}; has a worker run with this data dir?"
            )
        # the stored rollups answer: only the rows of sessions last active on since's day
        rows = None
        where = str(settings.data_dir)
    if rows is None:
        rollup = Rollup()
        for d in dirs:
            if since is None:
                rollup.add(SummaryStore.read_rollup(d, args.by))
            else:
                rollup.add(SummaryStore.read_rollup_since(d, args.by, since))
    else:
        rollup = rollup_rows(
            (r for r in rows if since is None or active_since(r.last_ts, since)), args.by
        )
    groups = price_rollup(rollup, args.by, book)
    sessions = sum(t.sessions for t in groups.values())
    order = sorted(groups, key=lambda g: (-groups[g].cost_usd, -groups[g].tokens, g))
    if args.json:
        for g in order:
            print(json.dumps({args.by: g, **groups[g].to_json()}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{sessions} sessions in {where}, by {args.by}")
    for col in (args.by, "sessions", "events", "tokens", "cost", "unpriced tokens"):
        table.add_column(col, justify="left" if col == args.by else "right", no_wrap=True)
    for col in ("tool calls", "failures"):
        table.add_column(col, justify="right")
    for g in order:
        t = groups[g]
        table.add_row(
            g,
            f"{t.sessions:,}",
            f"{t.events:,}",
            f"{t.tokens:,}",
            f"${t.cost_usd:,.2f}",
            f"{t.unpriced_tokens:,}" if t.unpriced_tokens else "",
            f"{t.tool_calls:,}",
            f"{t.failures:,}",
        )
    Console().print(table)
    return 0
