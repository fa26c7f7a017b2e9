"""Flags shared by several commands, and turning them into Settings.

Every command that talks to the broker or the data dir takes the same flags
with the same meaning; flags override the environment (KAIZEN_BROKER,
KAIZEN_DATA_DIR, KAIZEN_PARTITIONS), which overrides the defaults.
"""

from __future__ import annotations

import argparse

from workers.cli.errors import CliError
from workers.settings import Settings, SettingsError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def add_settings_arguments(
    parser: argparse.ArgumentParser, *, data_dir: bool = True, partitions: bool = True
) -> None:
    parser.add_argument("--broker", metavar="HOST:PORT", help="bootstrap server (KAIZEN_BROKER)")
    if data_dir:
        parser.add_argument("--data-dir", metavar="DIR", help="data directory (KAIZEN_DATA_DIR)")
    if partitions:
        parser.add_argument(
            "--partitions", type=positive_int, metavar="N", help="partitions (KAIZEN_PARTITIONS)"
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command's flags applied; CliError when invalid."""
    try:
        settings = Settings.from_env().override(
            broker=getattr(args, "broker", None),
            data_dir=getattr(args, "data_dir", None),
            partitions=getattr(args, "partitions", None),
        )
        settings.broker_host_port  # noqa: B018 - validates the address early
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    return settings
