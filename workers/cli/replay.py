"""`kaizen-stream replay SESSION`: print every event of a session, in seq order.

Sends a replay request (kaizen.replay.requests, keyed by the session id, so
the worker owning the session answers), reads the reply on kaizen.replay
filtered by request id until the end marker, and prints one JSON object per
event (the Event schema's field names) or one readable line (`--format
pretty`), to stdout or `--out FILE`.

Exit codes: 0 after a complete replay (count and checksum of the end marker
match what arrived); 1 for an unknown session, a worker-side error (a refused
target included) or an incomplete reply; 2 for bad arguments; 3 when no
worker answers in time; 4 for a partial replay: every readable event was
printed, and a warning on stderr names the seqs the worker could not read
(damaged frames; the worker heals them from kaizen.events, so asking again
later gives them); 130 on Ctrl-C. Errors are one line on stderr. A progress bar shows on stderr
only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import IO, Any

from workers.cli.errors import CliError
from workers.cli.options import add_kafka_arguments, settings_from
from workers.settings import REPLAY_TOPIC, Settings

EXIT_NOT_FOUND = 1
EXIT_TIMEOUT = 3
EXIT_PARTIAL = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="session id")
    parser.add_argument("--from-seq", type=int, metavar="N", help="first seq (inclusive)")
    parser.add_argument("--to-seq", type=int, metavar="M", help="last seq (inclusive)")
    parser.add_argument(
        "--since", metavar="T", help="only events at or after T (15m, 2h, 7d, ISO time, epoch)"
    )
    parser.add_argument("--until", metavar="T", help="only events at or before T")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--format", choices=("jsonl", "pretty"), default="jsonl")
    parser.add_argument(
        "--pace",
        type=float,
        metavar="SPEED",
        help="replay with the original timing, SPEED times faster (default: as fast as possible)",
    )
    parser.add_argument("--topic", default=REPLAY_TOPIC, help="reply topic (default %(default)s)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds of silence before giving up (default %(default)s)",
    )
    add_kafka_arguments(parser)


def settings_of(args: argparse.Namespace) -> Settings:
    return settings_from(args)


def request_options(args: argparse.Namespace) -> dict[str, Any]:
    """ReplayRequest fields from the flags; CliError on values that make no sense."""
    from workers.replay.timespec import parse_time_ms

    options: dict[str, Any] = {}
    for name in ("from_seq", "to_seq"):
        value = getattr(args, name, None)
        if value is not None:
            if value < 0:
                raise CliError(f"--{name.replace('_', '-')} must be >= 0, not {value}")
            options[name] = value
    lo, hi = options.get("from_seq"), options.get("to_seq")
    if lo is not None and hi is not None and lo > hi:
        raise CliError(f"--from-seq {lo} is after --to-seq {hi}")
    try:
        if getattr(args, "since", None):
            options["from_ts_ms"] = parse_time_ms(args.since)
        if getattr(args, "until", None):
            options["to_ts_ms"] = parse_time_ms(args.until)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    pace = getattr(args, "pace", None)
    if pace is not None:
        if not pace > 0:
            raise CliError(f"--pace must be > 0, not {pace}")
        options["pacing"] = "original"
        options["speed"] = pace
    return options


def quiet_client_logs() -> None:
    """The command reports broker trouble in one line; aiokafka's own log lines would repeat it."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def timeout_message(session: str, timeout: float, broker: str) -> str:
    return (
        f"no answer for session {session} within {timeout:g}s: is a worker running? "
        f"start one with `kaizen-stream worker` (broker {broker})"
    )


def run(args: argparse.Namespace) -> int:
    quiet_client_logs()
    settings = settings_of(args)
    options = request_options(args)
    if args.timeout <= 0:
        raise CliError(f"--timeout must be > 0, not {args.timeout}")
    out: IO[str]
    try:
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    try:
        return asyncio.run(_replay(settings, args, options, out))
    except BrokenPipeError:
        # `kaizen-stream replay X | head`: the reader left; that is not an error.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if out is not sys.stdout:
            out.close()


async def _replay(
    settings: Settings, args: argparse.Namespace, options: dict[str, Any], out: IO[str]
) -> int:
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from workers.codec.errors import DecodeError
    from workers.codec.event import decode_event
    from workers.kafka.config import SecurityError
    from workers.kafka.errors import explain
    from workers.replay.client import ReplayClient, Replayed, ReplayResult, ReplyTimeout
    from workers.replay.formats import STATUS_NOT_FOUND, STATUS_OK, STATUS_PARTIAL
    from workers.replay.render import render

    progress = _Progress() if sys.stderr.isatty() else None
    try:
        async with ReplayClient(settings.kafka, args.topic, args.timeout) as client:
            request = client.request(args.session, **options)
            result: ReplayResult | None = None
            try:
                async for item in client.replay(request):
                    if isinstance(item, Replayed):
                        if progress is not None:
                            progress.advance(item.total)
                        try:
                            event = decode_event(item.value)
                        except DecodeError as exc:
                            print(f"kaizen-stream: skipped seq {item.seq}: {exc}", file=sys.stderr)
                            continue
                        out.write(render(event, args.format))
                        out.write("\n")
                    elif isinstance(item, ReplayResult):
                        result = item
            finally:
                if progress is not None:
                    progress.close()
            out.flush()
    except ReplyTimeout:
        raise CliError(
            timeout_message(args.session, args.timeout, settings.broker), EXIT_TIMEOUT
        ) from None
    except BrokenPipeError:
        raise  # the reader went away: the dispatcher ends quietly
    except (KafkaConnectionError, KafkaError, OSError, SecurityError) as exc:
        raise CliError(await explain(exc, settings.kafka), 1) from None
    assert result is not None
    end = result.end
    if end.status == STATUS_NOT_FOUND:
        raise CliError(f"no session {args.session!r}", EXIT_NOT_FOUND)
    if end.status not in (STATUS_OK, STATUS_PARTIAL):
        raise CliError(f"the worker could not replay {args.session}: {end.error or end.status}", 1)
    if not result.complete:
        raise CliError(
            f"incomplete replay of {args.session}: received {result.received} events "
            f"(checksum {result.checksum}), the worker sent {end.count} ({end.checksum})",
            1,
        )
    if end.status == STATUS_PARTIAL:
        raise CliError(partial_message(args.session, end.missing_text), EXIT_PARTIAL)
    return 0


def partial_message(session: str, missing: str) -> str:
    return (
        f"partial replay of {session}: seqs {missing} are damaged in the worker's hot log and "
        "were not sent (every other event was); the worker re-reads them from kaizen.events: "
        "replay again in a moment, or run `kaizen-stream verify --repair` on a stopped worker"
    )


class _Progress:
    """A rich progress bar on stderr, shown once a replay proves long (> 200 events)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._total: int | None = None
        self._seen = 0

    def advance(self, total: int | None) -> None:
        if total is not None:
            self._total = total
        self._seen += 1
        if self._bar is None:
            if (self._total or 0) <= 200 and self._seen <= 200:
                return
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("replay", total=self._total, completed=self._seen)
            return
        self._bar.update(self._task, completed=self._seen)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
