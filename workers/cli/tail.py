"""`kaizen-stream tail SESSION`: replay a session, then follow its live events; `--all` follows all.

Order of operations (this is what makes the seam exact):

1. follow kaizen.events (every partition, no consumer group) from `--lookback`
   messages before the end; this happens BEFORE the replay is requested, so
   every event is in the replay, in the live stream, or in both;
2. replay the session; live events that arrive meanwhile are buffered;
3. if the first buffered live seq is above the last replayed seq + 1, the
   missing seqs were produced but not yet ingested when the replay read the
   hot log: ask for that range again (a couple of times) before going on;
4. release the buffered live events with seq > the last replayed seq, in seq
   order, then print each live event whose seq is above the last printed one.

So each seq prints once, in order. A partial replay (damaged frames on the
worker) prints a warning naming the missing seqs on stderr and goes on. The
lookback also covers events produced before the follower started that the
worker had not ingested yet when the replay read its index. `--all` skips
the replay and prints one line per event of every session. Ctrl-C (or
SIGTERM) stops cleanly with exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import IO, Any

from workers.cli.errors import CliError
from workers.cli.options import add_kafka_arguments
from workers.cli.replay import (
    EXIT_TIMEOUT,
    partial_message,
    quiet_client_logs,
    settings_of,
    timeout_message,
)
from workers.settings import EVENTS_TOPIC, REPLAY_TOPIC, Settings

GAP_FILL_ATTEMPTS = 3
GAP_FILL_WAIT = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", nargs="?", help="session id (omit with --all)")
    parser.add_argument("--all", action="store_true", help="follow every session, no replay")
    parser.add_argument(
        "--format",
        choices=("jsonl", "pretty"),
        help="output format (default: jsonl for one session, pretty with --all)",
    )
    parser.add_argument(
        "--lookback",
        type=int,
        default=10_000,
        metavar="N",
        help="start following N messages before the end of each partition (default %(default)s)",
    )
    parser.add_argument("--topic", default=REPLAY_TOPIC, help="reply topic (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="replay answer timeout (s)")
    add_kafka_arguments(parser)


def run(args: argparse.Namespace) -> int:
    quiet_client_logs()
    if args.all == bool(args.session):
        raise CliError("give a SESSION or --all (not both)")
    if args.lookback < 0:
        raise CliError(f"--lookback must be >= 0, not {args.lookback}")
    settings = settings_of(args)
    fmt = args.format or ("pretty" if args.all else "jsonl")
    try:
        return asyncio.run(_tail(settings, args, fmt, sys.stdout))
    except BrokenPipeError:
        return 0


async def _tail(settings: Settings, args: argparse.Namespace, fmt: str, out: IO[str]) -> int:
    from aiokafka.errors import KafkaError

    from workers.kafka.config import SecurityError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    follower = None
    try:
        from workers.replay.client import open_follower

        follower = await open_follower(settings.kafka, EVENTS_TOPIC)
        await _rewind(follower, args.lookback if not args.all else 0)
        printer = _Printer(out, fmt)
        work = (
            _follow_all(follower, printer)
            if args.all
            else _follow_session(settings, args, follower, printer)
        )
        main = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (main, stopper):
            if task not in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if main in done:
            main.result()  # re-raise what ended it
        return 0
    except BrokenPipeError:
        raise  # the reader went away: the dispatcher ends quietly
    except (KafkaError, OSError, SecurityError) as exc:
        from workers.kafka.errors import explain

        raise CliError(await explain(exc, settings.kafka), 1) from None
    finally:
        if follower is not None:
            await follower.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _rewind(consumer: Any, lookback: int) -> None:
    if lookback <= 0:
        return
    for tp in consumer.assignment():
        position = await consumer.position(tp)
        consumer.seek(tp, max(0, position - lookback))


class _Printer:
    def __init__(self, out: IO[str], fmt: str) -> None:
        from workers.replay.render import render

        self._render = render
        self.out = out
        self.fmt = fmt

    def __call__(self, event: dict[str, Any]) -> None:
        self.out.write(self._render(event, self.fmt))
        self.out.write("\n")

    def flush(self) -> None:
        self.out.flush()


async def _follow_all(follower: Any, printer: _Printer) -> None:
    from workers.replay.client import live_events

    while True:
        batch = await follower.getmany(timeout_ms=500)
        for records in batch.values():
            for event, _ in live_events(records, None):
                printer(event)
        printer.flush()


async def _pump(follower: Any, session: str, queue: asyncio.Queue[tuple[str, int, Any]]) -> None:
    """Live events of `session` into `queue`, in the order the partition holds them."""
    from workers.replay.client import live_events

    while True:
        batch = await follower.getmany(timeout_ms=500)
        for records in batch.values():
            for event, _ in live_events(records, session):
                queue.put_nowait((event.get("producer") or "", int(event["seq"]), event))


async def _follow_session(
    settings: Settings, args: argparse.Namespace, follower: Any, printer: _Printer
) -> None:
    from workers.codec.event import decode_event
    from workers.replay.client import Replayed, ReplayResult, ReplyTimeout
    from workers.replay.formats import STATUS_ERROR, STATUS_PARTIAL
    from workers.replay.seam import Seams

    session: str = args.session
    queue: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
    pump = asyncio.ensure_future(_pump(follower, session, queue))
    seam: Seams[Any] = Seams()

    def drain() -> None:
        while not queue.empty():
            producer, seq, event = queue.get_nowait()
            seam.live(producer, seq, event)

    try:
        from workers.replay.client import ReplayClient

        async with ReplayClient(settings.kafka, args.topic, args.timeout) as client:

            async def replay(**options: Any) -> None:
                async for item in client.replay(client.request(session, **options)):
                    if isinstance(item, Replayed):
                        event = decode_event(item.value)
                        if seam.replayed(event.get("producer") or "", item.seq):
                            printer(event)
                    elif isinstance(item, ReplayResult) and item.end.status == STATUS_ERROR:
                        raise CliError(
                            f"the worker could not replay {session}: {item.end.error}", 1
                        )
                    elif isinstance(item, ReplayResult) and item.end.status == STATUS_PARTIAL:
                        # Go on following: the readable events were printed; say what was not.
                        msg = partial_message(session, item.end.missing_text)
                        print(f"kaizen-stream: warning: {msg}", file=sys.stderr, flush=True)
                printer.flush()

            try:
                await replay()
                for _ in range(GAP_FILL_ATTEMPTS):
                    drain()
                    gap = seam.gap()
                    if gap is None:
                        break
                    await asyncio.sleep(GAP_FILL_WAIT)
                    await replay(from_seq=gap[0], to_seq=gap[1])
            except ReplyTimeout:
                raise CliError(
                    timeout_message(session, args.timeout, settings.broker), EXIT_TIMEOUT
                ) from None
        drain()
        for _, event in seam.replay_done():
            printer(event)
        printer.flush()
        while True:
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, pump}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    pump.result()  # the follower died: raise why
                    raise CliError("stopped following kaizen.events", 1)
                producer, seq, event = getter.result()
            else:
                producer, seq, event = queue.get_nowait()
            for _, ready in seam.live(producer, seq, event):
                printer(ready)
            if queue.empty():
                printer.flush()
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
