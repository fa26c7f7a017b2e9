"""`kaizen-stream sessions`: the sessions in the local data dir, or --stats per partition.

Reads each partition's RocksDB index under ``<data>/hotlog/kaizen.events-<p>/``
directly and read-only (``PartitionStore.open_read_only``: it never takes a
worker's lock), so it works with or without a worker; ``--stats`` adds the
ingest counters the worker keeps beside each partition (ingested, duplicates
skipped, dead-lettered, bytes, lag).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.analytics.views import SORT_KEYS
from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, positive_int, settings_from
from workers.hotlog import layout
from workers.kafka.config import KafkaConnection
from workers.settings import EVENTS_TOPIC, SESSIONS_TOPIC
from workers.state import PartitionStore
from workers.state.store import INDEX_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, partitions=False)
    parser.add_argument("--stats", action="store_true", help="per-partition counters instead")
    parser.add_argument("--agent", help="only sessions of this agent")
    parser.add_argument("--model", help="only sessions whose main model contains this")
    parser.add_argument("--workspace", help="only sessions whose workspace contains this")
    parser.add_argument("--host", help="only sessions of this host")
    parser.add_argument("--since", help="only sessions active since then (7d, 12h, ISO time)")
    parser.add_argument("--sort", choices=SORT_KEYS, default="last", help="largest first")
    parser.add_argument(
        "--team", action="store_true", help=f"every worker's sessions, from {SESSIONS_TOPIC}"
    )
    parser.add_argument("--limit", type=positive_int, default=100, metavar="N")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def partition_dirs(hotlog: Path, topic: str = EVENTS_TOPIC) -> list[tuple[int, Path]]:
    """(partition, directory) of ``topic``'s partitions that have an index, in order."""
    dirs = layout.partition_dirs(hotlog, topic)
    return [(d.partition, d.path) for d in dirs if (d.path / INDEX_DIR).is_dir()]


def _time(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.team:
        return _list(
            _team_rows(settings.kafka, args), args, f"{SESSIONS_TOPIC} at {settings.broker}"
        )
    dirs = list(partition_dirs(settings.hotlog_dir))
    if not dirs:
        raise CliError(
            f"no partitions in {settings.hotlog_dir}; has a worker run with this data dir?"
        )
    from rich.console import Console
    from rich.table import Table

    from workers.ingest import metrics

    console = Console()
    if args.stats:
        table = Table(title=f"partitions in {settings.hotlog_dir}")
        cols = ["partition", "sessions", "events", "watermark", "ingested", "duplicates"]
        cols += ["dead-lettered", "bytes", "lag"]
        for col in cols:
            table.add_column(col, justify="right")
        for p, d in dirs:
            with PartitionStore.open_read_only(d, p) as store:
                st = store.stats()
            c = metrics.load(d)
            row = {**st, **c.to_json()}
            if args.json:
                print(json.dumps(row))
                continue
            table.add_row(
                str(p),
                f"{st['sessions']:,}",
                f"{st['entries']:,}",
                str(st["watermark"]),
                f"{c.ingested:,}",
                f"{c.duplicates:,}",
                f"{c.dead_lettered:,}",
                f"{c.bytes:,}",
                f"{c.lag:,}",
            )
        if not args.json:
            console.print(table)
        return 0
    return _list(_rows(dirs, args), args, str(settings.data_dir))


def _list(rows: list[tuple[dict[str, Any], Any, str]], args: argparse.Namespace, where: str) -> int:
    """Print (extra JSON, SessionRow, partition) rows: JSON lines or a table."""
    from rich.console import Console
    from rich.table import Table

    shown = rows[: args.limit]
    if args.json:
        for extra, r, _ in shown:
            print(json.dumps({**extra, **r.to_json()}))
        return 0
    table = Table(title=f"{len(shown)} of {len(rows)} sessions in {where}")
    for col, just in [
        ("session", "left"),
        ("agent", "left"),
        ("model", "left"),
        ("events", "right"),
        ("tokens", "right"),
        ("cost", "right"),
        ("tools", "right"),
        ("failed", "right"),
        ("active", "right"),
        ("last", "left"),
        ("partition", "right"),
    ]:
        # the session id is what one copies into `replay`/`retro`: never cut it
        table.add_column(col, justify=just, no_wrap=col in ("session", "cost"))  # type: ignore[arg-type]
    for _, r, partition in shown:
        cost = f"${r.cost_usd:,.2f}" + (" +?" if r.unpriced else "")
        table.add_row(
            r.session_id,
            r.agent or "",
            r.model or "",
            f"{r.events:,}",
            f"{r.tokens:,}",
            cost,
            f"{r.tool_calls:,}",
            f"{r.failures:,}",
            f"{r.active_ms // 60000} min",
            _time(r.last_ts or 0),
            partition,
        )
    console = Console()
    console.print(table)
    if any(r.unpriced for _, r, _ in shown):
        console.print("+? = tokens of a model no price source knows (set KAIZEN_PRICES_FILE)")
    return 0


def _filters(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The price book and the row filters of the command line; CliError when invalid."""
    from workers.analytics.prices import PriceBook, PricesFileError
    from workers.replay.timespec import parse_time_ms

    try:
        since = parse_time_ms(args.since) if args.since else None
        book = PriceBook.from_env()
    except (ValueError, PricesFileError) as exc:
        raise CliError(str(exc)) from None
    keep = {
        "agent": args.agent,
        "model": args.model,
        "workspace": args.workspace,
        "host": args.host,
        "since_ms": since,
    }
    return book, keep


def _sorted(rows: list[tuple[dict[str, Any], Any, str]], key: str) -> list[Any]:
    from workers.analytics import views

    order = {id(r): i for i, r in enumerate(views.sort_rows([r for _, r, _ in rows], key))}
    return sorted(rows, key=lambda x: order[id(x[1])])


def _rows(dirs: list[tuple[int, Path]], args: argparse.Namespace) -> list[Any]:
    """Rows of every local session passing the filters, sorted."""
    import dataclasses

    from workers.analytics import views
    from workers.analytics.aggregate import SessionSummary
    from workers.analytics.store import SummaryStore

    book, keep = _filters(args)
    out = []
    for p, d in dirs:
        summaries = {s.session_id: s for s in SummaryStore.read_all(d)}
        with PartitionStore.open_read_only(d, p) as store:
            for info in store.sessions():
                s = summaries.get(info.session_id)
                if s is None:  # not folded yet: what the index knows
                    s = SessionSummary(info.session_id, agent=info.agent, last_ts=info.last_ts_ms)
                r = dataclasses.replace(views.row(s, book), events=info.count)
                if views.keep(r, **keep):
                    out.append((info.to_json(), r, str(p)))
    return _sorted(out, args.sort)


def _team_rows(bootstrap: KafkaConnection, args: argparse.Namespace) -> list[Any]:
    """Rows of every session any worker published to kaizen.sessions, filtered, sorted."""
    import asyncio

    from workers.analytics import views
    from workers.analytics.team import read_team

    book, keep = _filters(args)
    try:
        summaries = asyncio.run(read_team(bootstrap))
    except Exception as exc:
        raise CliError(f"cannot read {SESSIONS_TOPIC} from {bootstrap}: {exc}") from None
    rows = [views.row(s, book) for s in summaries.values()]
    return _sorted([({}, r, "") for r in rows if views.keep(r, **keep)], args.sort)
