"""The `kaizen-stream` command: dispatch on the first word, import only that command.

Each command lives in `workers/cli/<module>.py` with `add_arguments(parser)`
and `run(args) -> int`. Only the chosen module is imported, so `kaizen-stream
hook claude` loads nothing heavy (no faust, aiokafka, fastavro or rich).
Errors the user can fix come out as one line, `kaizen-stream: <message>`,
with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from workers.cli.errors import CliError

PROG = "kaizen-stream"

# command -> (module under workers.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("up", "run broker and worker on this machine, load sample sessions"),
    "broker": ("broker", "start the embedded Kafka-protocol broker and create the topics"),
    "worker": ("worker", "run a worker: ingest events into the hot log, answer replays"),
    "hook": ("hook", "turn one agent hook call (JSON on stdin) into a spooled event"),
    "hooks": ("hooks", "install or uninstall the hooks in an agent's settings"),
    "ship": ("ship", "drain the local spool into Kafka"),
    "replay": ("replay", "print every event of a session, in order"),
    "tail": ("tail", "replay a session, then follow its live events"),
    "sessions": ("sessions", "list sessions known to the local worker, or --stats"),
    "verify": ("verify", "check every frame of the hot log; --repair fixes torn tails"),
    "import": ("import_", "import Claude Code and Codex transcripts (JSONL)"),
    "retro": ("retro", "findings on a session (or --since 7d): repeated failures, loops, cost"),
    "topics": ("topics", "create the topics (`topics create`) or check them (`topics check`)"),
    "stats": (
        "stats",
        "tokens, cost, tool calls and failures by model, agent, workspace, host or day",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `kaizen-stream: <message>` and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix(PROG).strip()
        raise CliError(f"{command}: {message}" if command else message)


def _top_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Ingest and replay coding-agent history on Kafka.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not args or args[0].startswith("-") or args[0] not in COMMANDS:
            if args and not args[0].startswith("-"):
                raise CliError(f"unknown command {args[0]!r}; one of: {', '.join(COMMANDS)}")
            parser = _top_parser()
            parser.parse_args(args)
            parser.print_help()
            return 0 if args else 2
        name = args[0]
        module_name, help_text = COMMANDS[name]
        module = importlib.import_module(f"workers.cli.{module_name}")
        # no abbreviations: `--sasl-password X` must not pass for --sasl-password-file
        parser = _Parser(prog=f"{PROG} {name}", description=help_text, allow_abbrev=False)
        module.add_arguments(parser)
        parsed = parser.parse_args(args[1:])
        code: int = module.run(parsed)
        return code
    except CliError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        # the line is the whole story: asyncio's report of a TLS connection torn down by
        # that failure (at loop close or garbage collection) would only repeat it
        import logging

        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output went away (`kaizen-stream replay X | head`): not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
