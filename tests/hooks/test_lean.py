"""The hook's import path is stdlib only: no faust, aiokafka, fastavro or rich."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.hooks.util import ENTRY, ROOT, hook_env

HEAVY = ("faust", "aiokafka", "fastavro", "rich", "crc32c", "kafka")

PROBE = """
import io, json, sys
sys.stdin = io.TextIOWrapper(io.BytesIO(json.dumps(
    {"session_id": "lean", "hook_event_name": "PreToolUse", "tool_name": "Bash"}).encode()))
sys.path.insert(0, sys.argv[1])
{run}
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded(code: str, tmp_path: Path, *flags: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, *flags, "-c", PROBE.replace("{run}", code), str(ROOT)],
        env=hook_env(tmp_path / "spool"),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def heavy(mods: set[str]) -> set[str]:
    return {m for m in mods if m.split(".")[0] in HEAVY}


def test_lean_entry_loads_only_stdlib(tmp_path: Path) -> None:
    mods = loaded("from workers.hooks.hook import main; main(['claude'])", tmp_path, "-I", "-S")
    assert not heavy(mods)
    # nor the stdlib modules that cost milliseconds and that the hook does not need
    assert not mods & {"typing", "dataclasses", "subprocess", "pathlib", "asyncio", "argparse"}
    assert "workers.settings" not in mods


def test_cli_hook_command_loads_nothing_heavy(tmp_path: Path) -> None:
    mods = loaded("from workers.cli import main; main(['hook', 'claude'])", tmp_path)
    assert not heavy(mods)


def test_importtime_of_the_installed_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-I", "-S", str(ENTRY), "claude"],
        input=b'{"session_id": "t", "hook_event_name": "Stop"}',
        env=hook_env(tmp_path / "spool"),
        capture_output=True,
        check=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.decode().splitlines()}
    assert not heavy(names)
    assert "workers.hooks.hook" in names
