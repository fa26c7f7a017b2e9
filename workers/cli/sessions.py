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

from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, positive_int, settings_from
from workers.hotlog import layout
from workers.settings import EVENTS_TOPIC
from workers.state import PartitionStore
from workers.state.store import INDEX_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, partitions=False)
    parser.add_argument("--stats", action="store_true", help="per-partition counters instead")
    parser.add_argument("--agent", help="only sessions of this agent")
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
    infos = []
    for p, d in dirs:
        with PartitionStore.open_read_only(d, p) as store:
            for info in store.sessions():
                if args.agent and info.agent != args.agent:
                    continue
                infos.append(info)
    infos.sort(key=lambda i: i.last_ts_ms, reverse=True)
    shown = infos[: args.limit]
    if args.json:
        for info in shown:
            print(json.dumps(info.to_json()))
        return 0
    table = Table(title=f"{len(shown)} of {len(infos)} sessions in {settings.data_dir}")
    for col, just in [
        ("session", "left"),
        ("agent", "left"),
        ("model", "left"),
        ("events", "right"),
        ("first", "left"),
        ("last", "left"),
        ("partition", "right"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for info in shown:
        table.add_row(
            info.session_id,
            info.agent,
            info.model or "",
            f"{info.count:,}",
            _time(info.first_ts_ms),
            _time(info.last_ts_ms),
            str(info.partition),
        )
    console.print(table)
    return 0
