"""`kaizen-stream ship`: drain the local hook spool into Kafka.

Without flags it sends what is spooled and exits; `--follow` runs as a
service; `--linger S` (what a hook starts on demand) stays S seconds after
the spool is empty. Only one shipper runs per spool (flock on shipper.lock):
a second one exits 0 at once. Before exiting it releases the lock and looks
once more, so an event spooled while it was leaving is not stranded.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import sys

from workers.cli.errors import CliError
from workers.cli.options import add_kafka_arguments, settings_from
from workers.hooks.spool import Spool
from workers.kafka.config import KafkaSecurity, SecurityError
from workers.settings import EVENTS_TOPIC


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_kafka_arguments(parser)
    parser.add_argument("--spool-dir", help="spool directory (default $KAIZEN_SPOOL_DIR)")
    parser.add_argument("--follow", action="store_true", help="keep running, ship as events come")
    parser.add_argument(
        "--linger", type=float, default=0.0, help="seconds to stay after the spool is empty"
    )
    parser.add_argument(
        "--give-up",
        type=float,
        default=120.0,
        help="without --follow: exit after this many seconds of failed delivery (0 = never)",
    )
    parser.add_argument("--topic", default=EVENTS_TOPIC)
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--status", action="store_true", help="print the spool's state as JSON")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--lock-fd", type=int, help=argparse.SUPPRESS
    )  # a hook that starts us passes shipper.lock, already locked


def _try_lock(path: str) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def check_credentials(security: KafkaSecurity) -> None:
    """On a laptop the SASL password sits in a file only its owner can read: CliError
    (saying how to fix it) for a password from the environment or a file others can read."""
    if not security.sasl:
        return
    if not security.password_file:
        raise CliError(
            "the shipper reads the SASL password from a file only you can read: write it to "
            "a file, run `chmod 600 FILE`, set KAIZEN_SASL_PASSWORD_FILE=FILE and unset "
            "KAIZEN_SASL_PASSWORD"
        )
    try:
        security.sasl_password()
    except SecurityError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from workers.shipper.shipper import Shipper, status_json

    settings = settings_from(args)
    check_credentials(settings.security)
    # the shipper logs why it cannot deliver, once per cause; aiokafka would log every retry
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.max_batch < 1:
        raise CliError("--max-batch must be at least 1")
    spool = Spool(args.spool_dir)
    spool.ensure()
    if args.status:
        print(status_json(spool))
        return 0
    lock = args.lock_fd if args.lock_fd is not None else _try_lock(spool.shipper_lock_path)
    if lock is None:
        if not args.quiet:
            print(f"kaizen-stream ship: another shipper is draining {spool.path}", file=sys.stderr)
        return 0
    shipped = 0
    while True:
        shipper = Shipper(
            spool, settings.kafka, topic=args.topic, max_batch=args.max_batch, quiet=args.quiet
        )
        try:
            asyncio.run(shipper.run(follow=args.follow, linger=args.linger, give_up=args.give_up))
        finally:
            os.close(lock)
        shipped += shipper.shipped
        if shipper.gave_up or not spool.pending():
            break
        lock = _try_lock(spool.shipper_lock_path)
        if lock is None:  # a shipper a hook just started takes over
            break
    if not args.quiet:
        print(f"kaizen-stream ship: {shipped} events shipped", file=sys.stderr)
    return 0
