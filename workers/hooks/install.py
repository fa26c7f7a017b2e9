"""Writing our hook entries into the agents' settings, and taking them out again.

Files (user scope / project scope, project = the current directory):
- Claude Code: ~/.claude/settings.json / .claude/settings.json, the "hooks"
  section: one matcher group per event with our command.
- Cursor: ~/.cursor/hooks.json / .cursor/hooks.json ({"version": 1, "hooks": ...}).
- Codex: $CODEX_HOME/hooks.json (default ~/.codex) / .codex/hooks.json, the
  Claude-compatible format; and, user scope only, `notify = [...]` in
  config.toml when no other notify program is set (Codex runs one only).

Invariants:
- Ours are the entries whose command runs `workers/hooks/_entry.py` or
  `kaizen-stream hook`; nothing else is touched, in either direction.
- Idempotent: installing twice writes once; a file is rewritten only when its
  content changes, and then the previous content goes to `<file>.kaizen-bak`.
- Uninstall removes only our entries (and containers they leave empty), so
  install + uninstall gives back the settings as they were.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from typing import Any

from workers.durable import atomic_write

ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_entry.py")
MARK = "# kaizen-stream"

CLAUDE_EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "PreCompact",
    "PostCompact",
    "Stop",
    "StopFailure",
    "SubagentStart",
    "SubagentStop",
    "SessionEnd",
)
CODEX_EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PreCompact",
    "PostCompact",
    "Stop",
    "SubagentStart",
    "SubagentStop",
)
CURSOR_EVENTS = (
    "sessionStart",
    "beforeSubmitPrompt",
    "beforeShellExecution",
    "afterShellExecution",
    "beforeMCPExecution",
    "afterMCPExecution",
    "beforeReadFile",
    "afterFileEdit",
    "afterAgentThought",
    "afterAgentResponse",
    "subagentStart",
    "subagentStop",
    "preCompact",
    "stop",
    "sessionEnd",
)
TOOL_EVENTS = frozenset(("PreToolUse", "PostToolUse", "PostToolUseFailure", "PermissionRequest"))


def hook_command(agent: str, python: str | None = None, broker: str | None = None) -> list[str]:
    """The lean command: interpreter without site-packages, running _entry.py."""
    argv = [python or sys.executable, "-I", "-S", ENTRY, agent]
    if broker:
        argv.append(f"--broker={broker}")
    return argv


def is_ours(command: Any) -> bool:
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    return isinstance(command, str) and (
        "workers/hooks/_entry.py" in command or "kaizen-stream hook" in command
    )


def _home() -> str:
    return os.path.expanduser("~")


def codex_home() -> str:
    return os.environ.get("CODEX_HOME") or os.path.join(_home(), ".codex")


def settings_path(agent: str, scope: str, project: str | None = None) -> str:
    base = project or os.getcwd()
    if agent == "claude":
        root = _home() if scope == "user" else base
        return os.path.join(root, ".claude", "settings.json")
    if agent == "cursor":
        root = _home() if scope == "user" else base
        return os.path.join(root, ".cursor", "hooks.json")
    if agent == "codex":
        root = codex_home() if scope == "user" else os.path.join(base, ".codex")
        return os.path.join(root, "hooks.json")
    raise ValueError(f"unknown agent {agent!r}")


# -- pure transformations ---------------------------------------------------


def strip_claude(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings without our entries (Claude Code / Codex hooks.json format)."""
    out = dict(settings)
    hooks = out.get("hooks")
    if not isinstance(hooks, dict):
        return out
    new_hooks: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            new_hooks[event] = groups
            continue
        kept_groups = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                handlers = [h for h in group["hooks"] if not is_ours(h.get("command"))]
                if not handlers and group["hooks"]:
                    continue
                group = {**group, "hooks": handlers}
            kept_groups.append(group)
        if kept_groups or not groups:
            new_hooks[event] = kept_groups
    if new_hooks:
        out["hooks"] = new_hooks
    else:
        del out["hooks"]
    return out


def add_claude(settings: dict[str, Any], command: str, events: tuple[str, ...]) -> dict[str, Any]:
    out = strip_claude(settings)
    hooks = dict(out.get("hooks") or {})
    for event in events:
        group: dict[str, Any] = {"hooks": [{"type": "command", "command": command, "timeout": 10}]}
        if event in TOOL_EVENTS:
            group = {"matcher": "*", **group}
        hooks[event] = [*hooks.get(event, []), group]
    out["hooks"] = hooks
    return out


def strip_cursor(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    hooks = out.get("hooks")
    if not isinstance(hooks, dict):
        return out
    new_hooks = {}
    for event, entries in hooks.items():
        if isinstance(entries, list):
            kept = [e for e in entries if not (isinstance(e, dict) and is_ours(e.get("command")))]
            if kept or not entries:
                new_hooks[event] = kept
        else:
            new_hooks[event] = entries
    if new_hooks:
        out["hooks"] = new_hooks
    else:
        del out["hooks"]
    return out


def add_cursor(config: dict[str, Any], command: str) -> dict[str, Any]:
    out = strip_cursor(config)
    out.setdefault("version", 1)
    hooks = dict(out.get("hooks") or {})
    for event in CURSOR_EVENTS:
        hooks[event] = [*hooks.get(event, []), {"command": command}]
    out["hooks"] = hooks
    return out


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a TOML basic string accepts JSON's escapes for these characters


def notify_line(argv: list[str]) -> str:
    return f"notify = [{', '.join(_toml_str(a) for a in argv)}]  {MARK}"


def _top_level_notify(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            return None
        if stripped.startswith("notify") and stripped[6:].lstrip().startswith("="):
            return i
    return None


def strip_notify(text: str) -> str:
    lines = text.splitlines(keepends=True)
    kept = [ln for ln in lines if not (ln.strip().startswith("notify") and MARK in ln)]
    return "".join(kept)


def add_notify(text: str, argv: list[str]) -> tuple[str, bool]:
    """config.toml with our notify line; False when another notify program is set."""
    text = strip_notify(text)
    lines = text.splitlines(keepends=True)
    if _top_level_notify(lines) is not None:
        return text, False
    return notify_line(argv) + "\n" + text, True


# -- files ------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        shutil.copy2(path, path + ".kaizen-bak")
    atomic_write(path, text.encode("utf-8"))


def _apply_json(path: str, new: dict[str, Any], old: dict[str, Any]) -> bool:
    if new == old:
        return False
    _write(path, json.dumps(new, indent=2, ensure_ascii=False) + "\n")
    return True


def install(
    agent: str,
    scope: str = "user",
    *,
    uninstall: bool = False,
    project: str | None = None,
    python: str | None = None,
    broker: str | None = None,
) -> list[str]:
    """Install (or uninstall) our hooks for one agent; one line per file changed or kept."""
    argv = hook_command(agent, python, broker)
    command = shlex.join(argv)
    path = settings_path(agent, scope, project)
    report: list[str] = []
    old = _read_json(path)
    if agent == "cursor":
        new = strip_cursor(old) if uninstall else add_cursor(old, command)
    else:
        events = CLAUDE_EVENTS if agent == "claude" else CODEX_EVENTS
        new = strip_claude(old) if uninstall else add_claude(old, command, events)
    changed = _apply_json(path, new, old)
    report.append(f"{'updated' if changed else 'unchanged'}: {path}")
    if agent == "codex" and scope == "user":
        toml_path = os.path.join(codex_home(), "config.toml")
        try:
            with open(toml_path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        if uninstall:
            new_text, ok = strip_notify(text), True
        else:
            new_text, ok = add_notify(text, argv)
        if new_text != text:
            _write(toml_path, new_text)
            report.append(f"updated: {toml_path}")
        elif not ok:
            report.append(
                f"kept: {toml_path} already sets another notify program; "
                "the Codex hooks in hooks.json still record every turn"
            )
        else:
            report.append(f"unchanged: {toml_path}")
    return report
