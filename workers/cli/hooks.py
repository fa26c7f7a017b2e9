"""`kaizen-stream hooks install [--agent A] [--scope user|project] [--uninstall]`.

Writes our hook entries into the agents' settings (see
workers/hooks/install.py for the files), idempotently and with a backup;
`--uninstall` removes only ours. The command written is the lean one:
`<this python> -I -S <repo>/workers/hooks/_entry.py <agent>`.
"""

from __future__ import annotations

import argparse

from workers.cli.errors import CliError
from workers.hooks.install import install

AGENTS = ("claude", "cursor", "codex")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install",), help="what to do")
    parser.add_argument(
        "--agent", choices=AGENTS, action="append", help="agent(s) to set up (default: all)"
    )
    parser.add_argument("--scope", choices=("user", "project"), default="user")
    parser.add_argument("--uninstall", action="store_true", help="remove our hook entries")
    parser.add_argument("--project-dir", help="project directory for --scope project (default .)")
    parser.add_argument(
        "--broker",
        help="bootstrap servers written into the hook command (default: the agent's "
        "$KAIZEN_BROKER at hook time)",
    )


def run(args: argparse.Namespace) -> int:
    for agent in args.agent or AGENTS:
        try:
            lines = install(agent, args.scope, uninstall=args.uninstall, project=args.project_dir)
        except (ValueError, OSError) as exc:
            raise CliError(f"{agent}: {exc}") from None
        for line in lines:
            print(f"{agent}: {line}")
    return 0
