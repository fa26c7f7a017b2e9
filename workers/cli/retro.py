"""`kaizen-stream retro SESSION` / `retro --since 7d`: findings on sessions, with evidence.

Reads the local data dir like `sessions` does (read-only while a worker runs):
each partition's session summaries (workers/analytics/store.py), and a
session's events through its index and the log's frames. The rules are in
workers/analytics/retro.py; cost is priced at read time
(workers/analytics/prices.py, `$KAIZEN_PRICES_FILE` first) to compare a
session with the team median for its main model.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, settings_from
from workers.cli.sessions import partition_dirs
from workers.state import PartitionStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, partitions=False)
    parser.add_argument("session", nargs="?", help="one session id")
    parser.add_argument("--since", help="every session active since then (7d, 12h, ISO time)")
    parser.add_argument("--json", action="store_true", help="one JSON finding per line")


def read_frame(directory: Path, loc: Any) -> bytes:
    """One frame's payload straight from its segment file (no log lock: read-only use)."""
    from workers.hotlog import frame, segment

    with open(directory / segment.name(loc.segment), "rb") as f:
        data = os.pread(f.fileno(), loc.length + frame.OVERHEAD, loc.position)
    got = frame.check(data, 0, len(data), loc.segment)
    if got is None or got[0] != loc.length:
        raise frame.CorruptFrame(f"bad frame at {loc}")
    return data[frame.HEAD_SIZE : frame.HEAD_SIZE + loc.length]


def session_events(directory: Path, partition: int, session_id: str) -> list[dict[str, Any]]:
    from workers.codec.event import decode_event

    with PartitionStore.open_read_only(directory, partition) as store:
        return [decode_event(read_frame(directory, loc)) for _, loc in store.locations(session_id)]


def run(args: argparse.Namespace) -> int:
    if not args.session and not args.since:
        raise CliError("name a session, or --since (e.g. --since 7d)")
    from workers.analytics.cost import session_cost
    from workers.analytics.prices import PriceBook, PricesFileError
    from workers.analytics.retro import Context, main_model, retro
    from workers.analytics.views import active_since
    from workers.replay.timespec import parse_time_ms

    since = None
    if args.since:
        try:
            since = parse_time_ms(args.since)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    try:
        book = PriceBook.from_env()
    except PricesFileError as exc:
        raise CliError(str(exc)) from None
    settings = settings_from(args)
    dirs = list(partition_dirs(settings.hotlog_dir))
    if not dirs:
        raise CliError(
            f"no partitions in {settings.hotlog_dir}; has a worker run with this data dir?"
        )
    costs: dict[str, list[float]] = {}
    chosen: list[tuple[int, Path, Any, float | None]] = []
    from workers.analytics.store import SummaryStore

    found = [(p, d, s) for p, d in dirs for s in SummaryStore.read_all(d)]
    for p, d, s in found:
        report = session_cost(s, book)
        model = main_model(s)
        if model is not None and report.complete:
            costs.setdefault(model, []).append(report.usd)
        wanted = (
            s.session_id == args.session if args.session else active_since(s.last_ts, since or 0)
        )
        if wanted:
            chosen.append((p, d, s, report.usd if report.complete else None))
    if args.session and not chosen:  # not summarised (yet): find it through the indexes
        for p, d in dirs:
            with PartitionStore.open_read_only(d, p) as store:
                if store.session(args.session) is not None:
                    chosen.append((p, d, None, None))
                    break
        else:
            raise CliError(f"no session {args.session!r} in {settings.data_dir}")
    findings = []
    for p, d, s, usd in chosen:
        sid = s.session_id if s is not None else args.session
        events = session_events(d, p, sid)
        findings += retro(events, s, Context(costs, usd))
    if args.json:
        for f in findings:
            print(json.dumps(f.to_json()))
        return 0
    from rich.console import Console

    console = Console()
    if not findings:
        console.print(f"no findings in {len(chosen)} session(s)")
        return 0
    for f in findings:
        console.print(
            f"[bold]{f.rule}[/bold] {f.session_id} seq {f.first_seq}..{f.last_seq}: {f.title}",
            highlight=False,
        )
        for line in f.details:
            console.print(f"    {line}", highlight=False)
        console.print(f"    [dim]suggestion:[/dim] {f.suggestion}", highlight=False)
    console.print(f"{len(findings)} finding(s) in {len(chosen)} session(s)")
    return 0
