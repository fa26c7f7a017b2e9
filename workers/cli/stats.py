"""`kaizen-stream stats --by model|agent|workspace|host|day`: totals over the local sessions.

Reads every partition's session summaries in the data dir (read-only while a
worker runs) and prices their tokens at read time (workers/analytics/prices.py).
Tokens and cost split exactly by model and by day; sessions, tool calls and
failures go to a session's main model and first day. Tokens of models no price
source knows are shown apart, never priced at zero.
"""

from __future__ import annotations

import argparse
import json

from workers.analytics.views import GROUP_KEYS
from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, settings_from
from workers.cli.sessions import partition_dirs
from workers.settings import SESSIONS_TOPIC


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
    from workers.analytics.views import totals_by
    from workers.replay.timespec import parse_time_ms

    try:
        since = parse_time_ms(args.since) if args.since else None
        book = PriceBook.from_env()
    except (ValueError, PricesFileError) as exc:
        raise CliError(str(exc)) from None
    settings = settings_from(args)
    if args.team:
        import asyncio

        from workers.analytics.team import read_team

        try:
            found = list(asyncio.run(read_team(settings.kafka)).values())
        except Exception as exc:
            raise CliError(f"cannot read {SESSIONS_TOPIC} from {settings.broker}: {exc}") from None
        where = f"{SESSIONS_TOPIC} at {settings.broker}"
    else:
        dirs = list(partition_dirs(settings.hotlog_dir))
        if not dirs:
            raise CliError(
                f"no partitions in {settings.hotlog_dir}; has a worker run with this data dir?"
            )
        found = [s for _, d in dirs for s in SummaryStore.read_all(d)]
        where = str(settings.data_dir)
    summaries = [s for s in found if since is None or (s.last_ts or 0) >= since]
    groups = totals_by(summaries, args.by, book)
    order = sorted(groups, key=lambda g: (-groups[g].cost_usd, -groups[g].tokens, g))
    if args.json:
        for g in order:
            print(json.dumps({args.by: g, **groups[g].to_json()}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(summaries)} sessions in {where}, by {args.by}")
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
