"""`kaizen-stream import PATH...`: Claude Code and Codex transcripts into kaizen.events.

PATH may be a transcript (.jsonl) or a directory searched for them (e.g.
~/.claude/projects or ~/.codex/sessions). Each line becomes one Event with
source=import and seq = 2**32 + line position, redacted like hook payloads,
so importing twice changes nothing (the worker dedupes on the key).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from workers.cli.errors import CliError
from workers.cli.options import add_kafka_arguments, settings_from
from workers.kafka.config import KafkaConnection
from workers.settings import EVENTS_TOPIC

CHUNK = 2_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="transcript files or directories")
    add_kafka_arguments(parser)
    parser.add_argument("--agent", choices=("claude", "codex"), help="skip format detection")
    parser.add_argument("--topic", default=EVENTS_TOPIC)
    parser.add_argument("--dry-run", action="store_true", help="map and count, send nothing")


async def _import(
    args: argparse.Namespace, files: list[str], broker: KafkaConnection
) -> tuple[int, int]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from workers.hooks.redact import Redactor
    from workers.importer.transcripts import transcript_events
    from workers.shipper.producer import start_producer

    redactor = Redactor.from_config()
    producer = None
    if not args.dry_run:
        try:
            producer = await start_producer(broker, "import")
        except Exception as exc:
            from workers.kafka.errors import explain

            raise CliError(await explain(exc, broker), 1) from None
    total = sessions = 0
    try:
        with Progress(
            TextColumn("[bold]import"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[events]} events"),
        ) as progress:
            task = progress.add_task("files", total=len(files), events=0)
            for path in files:
                chunk: list[dict[str, Any]] = []
                seen: set[str] = set()
                for fields in transcript_events(path, redactor, args.agent):
                    chunk.append(fields)
                    seen.add(fields["session_id"])
                    if len(chunk) >= CHUNK:
                        total += await _send(producer, chunk, args.topic)
                        chunk = []
                        progress.update(task, events=total)
                total += await _send(producer, chunk, args.topic)
                sessions += len(seen)
                progress.update(task, advance=1, events=total)
    finally:
        if producer is not None:
            await producer.stop()
    return total, sessions


async def _send(producer: Any, chunk: list[dict[str, Any]], topic: str) -> int:
    from workers.shipper.producer import send_events

    if producer is None:
        return len(chunk)
    return await send_events(producer, chunk, topic=topic)


def run(args: argparse.Namespace) -> int:
    from workers.importer.transcripts import find_transcripts

    settings = settings_from(args)
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise CliError(f"no such file or directory: {missing[0]}")
    files = find_transcripts(args.paths)
    if not files:
        raise CliError("no .jsonl transcripts found under the given paths")
    total, sessions = asyncio.run(_import(args, files, settings.kafka))
    verb = "mapped" if args.dry_run else "imported"
    print(f"{verb} {total} events of {sessions} sessions from {len(files)} files")
    return 0
