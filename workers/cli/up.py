"""`kaizen-stream up`: the whole system on one machine, in one command.

Starts the embedded broker and creates the topics, starts a worker process,
loads the bundled sample sessions (Claude Code, Cursor, Codex) through the
real hook mapping and shipper path, waits until every sample session replays
complete, then prints what to do next. Ctrl-C (or SIGTERM) stops the worker,
then the broker, and leaves no process behind; the data dir (hot logs,
offset tables) stays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

from workers.broker.embedded import BrokerError, EmbeddedBroker
from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, settings_from
from workers.settings import DEFAULT_BROKER, Settings

READY_TIMEOUT_S = 180.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--no-samples", action="store_true", help="do not load the sample sessions")
    parser.add_argument(
        "--web-port", type=int, default=6066, metavar="PORT", help="worker web server port"
    )


class _Stop(Exception):
    """SIGTERM, turned into an orderly shutdown like Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _cli(*words: str) -> list[str]:
    return [sys.executable, "-m", "workers", *words]


def start_worker(settings: Settings, web_port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KAIZEN_BROKER=settings.broker, KAIZEN_DATA_DIR=str(settings.data_dir))
    env["KAIZEN_PARTITIONS"] = str(settings.partitions)
    return subprocess.Popen(
        _cli("worker", "--web-port", str(web_port)),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # stopped by us, after nothing else needs it
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def load_samples(settings: Settings) -> dict[str, int]:
    """Produce the bundled sample sessions; returns session id -> events."""
    from workers.codec.event import complete_event
    from workers.hooks.samples import sample_events
    from workers.shipper.producer import produce_events

    events = [complete_event(e) for e in sample_events()]
    asyncio.run(produce_events(settings.broker, events))
    counts: dict[str, int] = {}
    for event in events:
        counts[event["session_id"]] = counts.get(event["session_id"], 0) + 1
    return counts


def replays_complete(settings: Settings, session_id: str, expected: int) -> bool:
    """True once `kaizen-stream replay` returns every event of the session."""
    env = dict(os.environ, KAIZEN_BROKER=settings.broker)
    result = subprocess.run(
        _cli("replay", session_id, "--format", "jsonl"),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.returncode == 0 and len(lines) == expected


def wait_ready(
    settings: Settings, sessions: dict[str, int], worker: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(sessions)
    while pending:
        if worker.poll() is not None:
            raise CliError(f"the worker exited with code {worker.returncode}; see {log}", code=1)
        if time.monotonic() > deadline:
            raise CliError(
                f"sample sessions did not replay within {READY_TIMEOUT_S:.0f}s; see {log}", code=1
            )
        for session_id, expected in list(pending.items()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                if replays_complete(settings, session_id, expected):
                    del pending[session_id]
        if pending:
            time.sleep(1.0)


def command_name() -> str:
    """How the user runs kaizen-stream: plain when on PATH, else this install's script.

    After `make up` the command lives in .venv/bin, which is not on PATH.
    """
    script = Path(sys.executable).parent / "kaizen-stream"
    if not script.exists() or shutil.which("kaizen-stream") == str(script):
        return "kaizen-stream"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def next_steps(settings: Settings, sessions: dict[str, int], web_port: int) -> str:
    exports = []
    if settings.broker != DEFAULT_BROKER:
        exports.append(f"export KAIZEN_BROKER={settings.broker}")
    if settings.data_dir != Settings.from_env({}).data_dir:
        exports.append(f"export KAIZEN_DATA_DIR={settings.data_dir}")
    k = command_name()
    example = next(iter(sessions), "<session-id>")
    listed = "\n".join(f"  {sid}  ({n} events)" for sid, n in sessions.items())
    lines = [
        *exports,
        f"{k} hooks install --agent claude   # send Claude Code sessions here",
        f"{k} replay {example}",
        f"{k} tail --all",
        f"{k} sessions --sort cost",
        f"{k} stats --by model",
        f"{k} retro {example}",
    ]
    return (
        f"kaizen-stream is up: broker {settings.broker}, worker web http://127.0.0.1:{web_port}, "
        f"data in {settings.data_dir}\n"
        f"Page (sessions, timelines, cost, tool failures): http://127.0.0.1:{web_port}/\n"
        + (f"\nSample sessions:\n{listed}\n" if sessions else "")
        + "\nNext, in another terminal:\n"
        + "".join(f"  {line}\n" for line in lines)
        + "\nCtrl-C stops everything."
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    settings = settings_from(args)
    console = Console(stderr=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    log_path = settings.data_dir / "logs" / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        from workers.cli.broker import start as start_broker

        with console.status("starting the broker"):
            try:
                broker = start_broker(settings)
            except BrokerError as exc:
                raise CliError(str(exc), code=1) from None
        with log_path.open("ab") as log:
            worker = start_worker(settings, args.web_port, log)
        console.print(f"broker on {settings.broker}; worker started (log: {log_path})")
        sessions: dict[str, int] = {}
        if not args.no_samples:
            with console.status("loading sample sessions and waiting for the worker to serve them"):
                sessions = load_samples(settings)
                wait_ready(settings, sessions, worker, log_path)
        print(next_steps(settings, sessions, args.web_port), flush=True)
        while (
            worker.poll() is None and broker.process is not None and broker.process.poll() is None
        ):
            time.sleep(0.5)
        what = "worker" if worker.poll() is not None else "broker"
        raise CliError(f"the {what} stopped on its own; see {log_path}", code=1)
    except (KeyboardInterrupt, _Stop):
        console.print("stopping")
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if worker is not None:
            stop_process(worker)
        if broker is not None:
            broker.stop()
