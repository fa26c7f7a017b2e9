"""`hooks install` and `--uninstall` round trip on a temporary HOME."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hooks.util import ROOT, hook_env, spooled_fields
from workers.hooks.install import CLAUDE_EVENTS, CURSOR_EVENTS, install

USER_CLAUDE = {
    "model": "opus",
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "guard.sh"}]}],
    },
}
USER_CURSOR = {"version": 1, "hooks": {"afterFileEdit": [{"command": "./format.sh"}]}}
USER_TOML = 'model = "gpt-5.1-codex"\n\n[features]\nhooks = true\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CODEX_HOME", raising=False)
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps(USER_CLAUDE))
    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".cursor" / "hooks.json").write_text(json.dumps(USER_CURSOR))
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "config.toml").write_text(USER_TOML)
    return tmp_path


def cli(*args: str, home: Path) -> str:
    env = dict(os.environ, HOME=str(home))
    env.pop("CODEX_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "hooks", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=home,
    )
    return proc.stdout


def test_round_trip(home: Path) -> None:
    out = cli("install", home=home)
    assert out.count("updated") == 4
    claude = json.loads((home / ".claude" / "settings.json").read_text())
    assert claude["model"] == "opus"
    assert set(claude["hooks"]) == set(CLAUDE_EVENTS)
    assert claude["hooks"]["Stop"][0]["hooks"][0]["command"] == "notify-send done"
    ours = claude["hooks"]["PreToolUse"][-1]
    assert ours["matcher"] == "*"
    argv = shlex.split(ours["hooks"][0]["command"])
    assert argv[1:3] == ["-I", "-S"] and argv[3].endswith("workers/hooks/_entry.py")
    cursor = json.loads((home / ".cursor" / "hooks.json").read_text())
    assert set(cursor["hooks"]) >= set(CURSOR_EVENTS)
    assert cursor["hooks"]["afterFileEdit"][0] == {"command": "./format.sh"}
    toml = (home / ".codex" / "config.toml").read_text()
    assert toml.startswith("notify = [") and toml.endswith(USER_TOML)
    codex = json.loads((home / ".codex" / "hooks.json").read_text())
    assert "PostToolUse" in codex["hooks"]
    assert (home / ".claude" / "settings.json.kaizen-bak").exists()

    assert cli("install", home=home).count("unchanged") == 4  # idempotent

    cli("install", "--uninstall", home=home)
    assert json.loads((home / ".claude" / "settings.json").read_text()) == USER_CLAUDE
    assert json.loads((home / ".cursor" / "hooks.json").read_text()) == USER_CURSOR
    assert (home / ".codex" / "config.toml").read_text() == USER_TOML
    assert json.loads((home / ".codex" / "hooks.json").read_text()) == {}


def test_project_scope_and_one_agent(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    install("claude", "project", project=str(project))
    assert (project / ".claude" / "settings.json").exists()
    assert json.loads((home / ".claude" / "settings.json").read_text()) == USER_CLAUDE
    install("claude", "project", project=str(project), uninstall=True)
    assert json.loads((project / ".claude" / "settings.json").read_text()) == {}


def test_other_notify_program_is_kept(home: Path) -> None:
    (home / ".codex" / "config.toml").write_text('notify = ["my-notifier"]\n' + USER_TOML)
    lines = install("codex", "user")
    assert any("another notify program" in line for line in lines)
    assert (home / ".codex" / "config.toml").read_text().startswith('notify = ["my-notifier"]')


def test_installed_command_runs(home: Path, tmp_path: Path) -> None:
    install("claude", "user", broker="127.0.0.1:1")
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["Stop"][-1]["hooks"][0]["command"]
    assert command.endswith(" claude --broker=127.0.0.1:1")
    env = hook_env(tmp_path / "spool")
    proc = subprocess.run(
        command,
        shell=True,
        input=b'{"session_id": "inst", "hook_event_name": "Stop"}',
        env=env,
        capture_output=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and proc.stdout == b""
    assert [f["session_id"] for f in spooled_fields(tmp_path / "spool")] == ["inst"]


def test_hook_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.hooks.hook import apply_options

    monkeypatch.delenv("KAIZEN_BROKER", raising=False)
    args = apply_options(["codex", "--broker=kafka:9092", '{"type": "agent-turn-complete"}'])
    assert args == ["codex", '{"type": "agent-turn-complete"}']
    assert os.environ["KAIZEN_BROKER"] == "kafka:9092"
