"""Flags shared by several commands, and turning them into Settings.

Every command that talks to the broker or the data dir takes the same flags
with the same meaning; flags override the environment (KAIZEN_BROKER,
KAIZEN_DATA_DIR, KAIZEN_PARTITIONS, the KAIZEN_SECURITY_PROTOCOL/SASL/SSL
settings), which overrides the defaults. The SASL password has no flag: a
command line is visible to every user of the machine (ps); it comes from
KAIZEN_SASL_PASSWORD_FILE or KAIZEN_SASL_PASSWORD.
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


# flag -> (Settings.override keyword, help); every one also has its KAIZEN_* variable
KAFKA_FLAGS = {
    "--security-protocol": ("protocol", "PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL"),
    "--sasl-mechanism": ("mechanism", "PLAIN|SCRAM-SHA-256|SCRAM-SHA-512"),
    "--sasl-username": ("username", "SASL user"),
    "--sasl-password-file": ("password_file", "file holding the SASL password (chmod 600)"),
    "--ssl-cafile": ("cafile", "CA certificates to trust (PEM)"),
    "--ssl-certfile": ("certfile", "client certificate for mutual TLS (PEM)"),
    "--ssl-keyfile": ("keyfile", "client key for mutual TLS (PEM)"),
}


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """--broker and the TLS/SASL flags; see `settings_from`."""
    parser.add_argument(
        "--broker", metavar="HOST:PORT[,...]", help="bootstrap servers (KAIZEN_BROKER)"
    )
    group = parser.add_argument_group("Kafka security (default: the KAIZEN_* variables)")
    for flag, (_, help_text) in KAFKA_FLAGS.items():
        env = "KAIZEN_" + flag.removeprefix("--").upper().replace("-", "_")
        group.add_argument(flag, help=f"{help_text} ({env})")
    group.add_argument(
        "--no-ssl-check-hostname",
        dest="check_hostname",
        action="store_false",
        default=None,
        help="do not check the broker's name against its certificate "
        "(KAIZEN_SSL_CHECK_HOSTNAME=false)",
    )


def add_settings_arguments(
    parser: argparse.ArgumentParser, *, data_dir: bool = True, partitions: bool = True
) -> None:
    add_kafka_arguments(parser)
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
            check_hostname=getattr(args, "check_hostname", None),
            **{
                name: getattr(args, flag.removeprefix("--").replace("-", "_"), None)
                for flag, (name, _) in KAFKA_FLAGS.items()
            },
        )
        settings.check_brokers()  # validates the addresses early
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    return settings
