"""`kaizen-stream hook <claude|cursor|codex> [JSON]`: one agent hook call into the spool.

The payload comes on stdin (Codex's legacy `notify` passes it as the last
argument). Always exits 0; see workers/hooks/hook.py for what it prints. The
settings written by `hooks install` call the leaner `python -I -S
workers/hooks/_entry.py <agent>`, which runs the same code.
"""

from __future__ import annotations

import argparse

from workers.hooks import hook


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent", choices=hook.AGENTS, help="the agent that calls the hook")
    parser.add_argument("payload", nargs="?", help="hook JSON (Codex notify); default: stdin")
    parser.add_argument("--broker", help="bootstrap servers for the shipper it may start")


def run(args: argparse.Namespace) -> int:
    argv = [args.agent] + ([args.payload] if args.payload else [])
    if args.broker:
        argv.append(f"--broker={args.broker}")
    hook.main(argv)
    return 0
