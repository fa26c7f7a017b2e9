"""The hook's import path is stdlib only: no faust, aiokafka, fastavro or rich."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.hooks.util import ENTRY, ROOT, hook_env, spooled_fields

HEAVY = ("faust", "aiokafka", "fastavro", "rich", "crc32c", "kafka")

PROBE = """
import io, sys
sys.stdin = io.TextIOWrapper(io.BytesIO(
    b'{"session_id": "lean", "hook_event_name": "PreToolUse", "tool_name": "Bash"}'))
sys.path.insert(0, sys.argv[1])
{run}
print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""


def loaded(code: str, tmp_path: Path, *flags: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, *flags, "-c", PROBE.replace("{run}", code), str(ROOT)],
        env=hook_env(tmp_path / "spool"),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(proc.stderr.strip().splitlines()[-1].split())


def heavy(mods: set[str]) -> set[str]:
    return {m for m in mods if m.split(".")[0] in HEAVY}


def test_lean_entry_loads_only_stdlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = "from workers.hooks.hook import main; main(['claude'])"
    first = loaded(code, tmp_path, "-I", "-S")  # compiles the rules and caches them
    assert not heavy(first)
    mods = loaded(code, tmp_path, "-I", "-S")
    assert not heavy(mods)
    # nor the stdlib modules that cost milliseconds and that the hook does not need:
    # json and re (with enum) alone are ~6 ms; fastjson and the rule cache avoid them
    assert not mods & {
        "typing",
        "dataclasses",
        "subprocess",
        "pathlib",
        "asyncio",
        "argparse",
        "json",
        "re",
        "enum",
    }
    assert "workers.settings" not in mods
    # and the hook really ran (an early failure would load nothing heavy either)
    assert len(spooled_fields(tmp_path / "spool")) == 2
    assert not (tmp_path / "spool" / "warnings.log").exists()


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
