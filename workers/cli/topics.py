"""`kaizen-stream topics create|check`: provision the project's topics as operators do.

`create` creates every missing topic with the partitions, replication factor,
min.insync.replicas, retention and max.message.bytes of the settings (flags
override KAIZEN_*); an existing topic is left alone: with the right config it
is fine, a difference is reported and the exit code is 1. `check` prints one
line per topic and exits 1 with a one-line reason when something is wrong.
What each topic must be is owned by `workers.broker.topics`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, positive_int, settings_from
from workers.settings import Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "check"], help="create or check the topics")
    add_settings_arguments(parser, data_dir=False)
    parser.add_argument(
        "--replication-factor",
        type=positive_int,
        metavar="N",
        help="replicas of every partition (KAIZEN_REPLICATION_FACTOR; default 1)",
    )
    parser.add_argument(
        "--min-insync-replicas",
        type=positive_int,
        metavar="N",
        help="replicas that must have a write before it is acknowledged "
        "(KAIZEN_MIN_INSYNC_REPLICAS; default 2 from replication factor 3 up, else 1)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=positive_int,
        metavar="B",
        help="largest message of the events, DLQ and replay topics (KAIZEN_MAX_MESSAGE_BYTES)",
    )
    parser.add_argument(
        "--replay-retention-ms",
        type=positive_int,
        metavar="MS",
        help="how long kaizen.replay keeps replies (KAIZEN_REPLAY_RETENTION_MS; default 1 day)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = settings_from(args).override(
            replication_factor=args.replication_factor,
            min_insync_replicas=args.min_insync_replicas,
            max_message_bytes=args.max_message_bytes,
            replay_retention_ms=args.replay_retention_ms,
        )
        settings.min_insync  # noqa: B018 - validates it against the replication factor
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    return settings


def run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from workers.broker import topics

    settings = _settings(args)
    # a failure is reported in one line below; aiokafka's own log lines would repeat it
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        if args.action == "create":
            created, found = asyncio.run(topics.create_topics(settings))
            for name in created:
                print(f"{name}: created")
            problems = [p for ps in found.values() for p in ps]
        else:
            states, problems = asyncio.run(topics.check_topics(settings))
            for name, state in states.items():
                print(topics.describe_line(state, name))
    except KafkaError as exc:
        raise CliError(f"topics {args.action} on {settings.broker}: {exc}", 1) from None
    if problems:
        fix = (
            "fix the topics (kafka-configs.sh --alter, or delete and re-create them) "
            "or the settings"
        )
        raise CliError(f"topics {args.action}: {'; '.join(problems)}; {fix}", 1)
    if args.action == "create":
        print(f"topics ok on {settings.broker}")
    return 0
