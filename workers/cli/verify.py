"""`kaizen-stream verify [--repair]`: check every frame of the hot log under the data dir.

Prints one table row per partition directory (segments, frames, bytes, bad ranges) and one
greppable ``bad range:`` line per damaged range; exits 1 when damage remains, 0 otherwise.
``--repair`` truncates torn tails (and rewrites damaged segment headers), then asks the index
owner to rebuild the index of each repaired partition
(``workers.state.rebuild.rebuild_partition(directory, partition)``).
Then it heals the bad ranges in the middle of segments from the source topic when the broker
(``--broker``, default ``KAIZEN_BROKER``) is reachable: the events of the Kafka messages around
each range are read again and those the index cannot read back are appended again
(``workers.ingest.heal``); a healed range is recorded and reported as healed. A range it cannot
heal (broker down, offsets gone to retention or to an older broker incarnation) gets a
``not healed:`` line, and the exit code stays 1.

Beside a running worker: plain ``verify`` is read only (no lock, no file created);
``--repair`` refuses in one line, and holds the exclusive worker lock of the hot log
(:mod:`workers.hotlog.owner`) from the check to the last heal, so a worker that
starts meanwhile waits for it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from workers.cli.errors import CliError
from workers.hotlog.layout import parse_dir_name
from workers.hotlog.owner import lock_for_repair
from workers.hotlog.verify import (
    PartitionVerdict,
    mark_healed,
    repaired_partitions,
    verify_all,
)
from workers.kafka.config import KafkaConnection
from workers.settings import EVENTS_TOPIC, Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: KAIZEN_DATA_DIR)"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="truncate torn tails, rebuild their indexes, heal damaged frames from the broker",
    )
    parser.add_argument("--broker", help="bootstrap servers for healing (default $KAIZEN_BROKER)")


def _fmt_range(v: PartitionVerdict) -> str:
    lines = []
    for r in v.bad_ranges:
        fixed = " (repaired)" if r in v.repaired else (" (healed)" if r in v.healed else "")
        lines.append(f"{r.segment}: [{r.start}, {r.end}) {r.reason}{fixed}")
    return "\n".join(lines + v.problems) or "-"


def _rebuild_index(directories: list[Path], console: Console) -> None:
    """Rebuild the index of each repaired partition (the index owner's rebuild)."""
    from workers.state.rebuild import rebuild_partition

    for directory in directories:
        owner = parse_dir_name(directory.name)
        if owner is None or owner[0] != EVENTS_TOPIC:
            console.print(f"index not rebuilt: {directory.name} is not a {EVENTS_TOPIC} partition")
            continue
        store = rebuild_partition(directory, owner[1])
        store.close()
        console.print(f"index rebuilt: {directory.name}")


def _heal(verdicts: list[PartitionVerdict], broker: KafkaConnection, console: Console) -> None:
    """Heal each stopped partition's unhealed middle ranges from the source topic."""
    import asyncio

    from workers.ingest.heal import heal_directory

    for v in verdicts:
        owner = parse_dir_name(v.directory.name)
        todo = v.unhealed
        if v.live or not todo or owner is None:
            continue
        report = asyncio.run(
            heal_directory(
                v.directory,
                owner[0],
                owner[1],
                [(r.segment, r.start) for r in todo],
                bootstrap=broker,
            )
        )
        spans = ", ".join(f"{s.lo}..{s.hi}" for s in report.spans)
        if report.complete:
            mark_healed(v.directory, todo)
            v.healed.extend(todo)
            console.print(
                f"healed {len(report.healed)} event(s): {v.name} from {owner[0]} offsets {spans}",
                soft_wrap=True,
                highlight=False,
            )
        else:
            console.print(
                f"not healed: {v.name} offsets {spans}: {'; '.join(report.problems)}",
                soft_wrap=True,
                highlight=False,
            )


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env().override(data_dir=args.data_dir, broker=args.broker)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    hotlog_dir = settings.hotlog_dir
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise CliError(f"no such data directory: {args.data_dir}")
    owner_fd: int | None = None
    if args.repair and hotlog_dir.is_dir():
        owner_fd = lock_for_repair(hotlog_dir)
        if owner_fd is None:
            raise CliError(
                f"a worker is running on {settings.data_dir}: stop it before `verify --repair` "
                "(plain `verify` is read-only and safe beside it)"
            )
    try:
        return _verify(args, settings)
    finally:
        if owner_fd is not None:
            os.close(owner_fd)


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    hotlog_dir = settings.hotlog_dir
    verdicts = verify_all(hotlog_dir, repair=args.repair)
    console = Console(width=max(Console().width, 120))
    if args.repair:
        _heal(verdicts, settings.kafka, console)
    table = Table(title=f"hot log {hotlog_dir}")
    for col in ("partition", "segments", "frames", "bytes", "bad ranges", "status"):
        table.add_column(col, justify="right" if col in ("segments", "frames", "bytes") else "left")
    for v in verdicts:
        status = "CORRUPT" if v.corrupt else ("repaired" if v.repaired or v.healed else "ok")
        if v.live:
            status += " (live)"
        table.add_row(v.name, str(v.segments), str(v.frames), str(v.bytes), _fmt_range(v), status)
    console.print(table)
    for v in verdicts:
        for r in v.bad_ranges:
            state = "repaired" if r in v.repaired else "present"
            if r in v.healed:
                state = f"healed from {EVENTS_TOPIC}"
            console.print(
                f"bad range: {v.name} segment {r.segment} bytes [{r.start}, {r.end}) "
                f"{r.reason} ({state})",
                soft_wrap=True,
                highlight=False,
            )
        for p in v.problems:
            console.print(f"problem: {v.name}: {p}", soft_wrap=True, highlight=False)
    if not verdicts:
        console.print(f"no partitions under {hotlog_dir}")
    if args.repair:
        _rebuild_index(repaired_partitions(verdicts), console)
    return 1 if any(v.corrupt for v in verdicts) else 0
