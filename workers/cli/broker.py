"""`kaizen-stream broker`: the embedded Kafka-protocol broker for one machine.

By default the broker is started detached and the command returns once the
broker answers and the five topics exist, leaving a pid file in
`<data>/broker/<port>.pid`; `--stop` stops that broker. `--foreground` keeps
it attached until Ctrl-C. A port already in use is a one-line error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from workers.broker.embedded import BrokerError, EmbeddedBroker
from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, settings_from
from workers.settings import ALL_TOPICS, DEFAULT_BROKER, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--foreground", action="store_true", help="stay attached until Ctrl-C")
    mode.add_argument("--stop", action="store_true", help="stop the broker started earlier")


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / "broker" / f"{settings.broker_host_port[1]}.pid"


def start(settings: Settings) -> EmbeddedBroker:
    """Start the broker on the settings' address and create the topics; BrokerError on failure."""
    from workers.broker.topics import ensure_topics

    host, port = settings.broker_host_port
    log = settings.data_dir / "broker" / f"tansu-{port}.log"
    broker = EmbeddedBroker(host, port, log=log).start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap, settings.partitions))
    except BaseException:
        broker.stop()
        raise
    return broker


def _is_tansu(pid: int) -> bool:
    try:
        return b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(settings: Settings, timeout: float = 10.0) -> int:
    path = pid_file(settings)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        raise CliError(
            f"no broker started by `kaizen-stream broker` on {settings.broker}"
        ) from None
    if _is_tansu(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_tansu(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_tansu(pid):
            os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    print(f"stopped the broker on {settings.broker}")
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.stop:
        return stop(settings)
    try:
        broker = start(settings)
    except BrokerError as exc:
        raise CliError(str(exc), code=1) from None
    topics = ", ".join(ALL_TOPICS)
    print(f"broker on {broker.bootstrap} with {settings.partitions} partitions: {topics}")
    if not args.foreground:
        assert broker.process is not None
        pid_file(settings).write_text(f"{broker.process.pid}\n")
        flag = "" if settings.broker == DEFAULT_BROKER else f" --broker {settings.broker}"
        print(f"it runs in the background; stop it with `kaizen-stream broker --stop{flag}`")
        return 0
    print("Ctrl-C stops it")
    try:
        while broker.process is not None and broker.process.poll() is None:
            time.sleep(0.5)
        raise CliError("the broker exited on its own", code=1)
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
