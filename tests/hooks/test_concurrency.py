"""Concurrent hook processes of one session get distinct, gap-free seqs (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.hooks.util import ENTRY, hook_env, spooled_fields


def test_concurrent_hooks_get_distinct_seqs(tmp_path: Path) -> None:
    env = hook_env(tmp_path / "spool")
    n = 48
    procs = []
    for i in range(n):
        payload = (
            f'{{"session_id": "same-session", "hook_event_name": "PostToolUse", '
            f'"tool_name": "Bash", "tool_use_id": "t{i}"}}'
        )
        p = subprocess.Popen(
            [sys.executable, "-I", "-S", str(ENTRY), "claude"],
            stdin=subprocess.PIPE,
            env=env,
        )
        procs.append((p, payload))
    for p, payload in procs:  # write all stdins only after every process is running
        assert p.stdin is not None
        p.stdin.write(payload.encode())
        p.stdin.close()
    assert all(p.wait(60) == 0 for p, _ in procs)
    fields = spooled_fields(tmp_path / "spool")
    assert sorted(f["seq"] for f in fields) == list(range(n))
    assert len({f["tool_call_id"] for f in fields}) == n


def test_sessions_count_independently(tmp_path: Path) -> None:
    env = hook_env(tmp_path / "spool")
    for session in ("a", "b", "a", "weird/../id with spaces", "a", "b"):
        subprocess.run(
            [sys.executable, "-I", "-S", str(ENTRY), "cursor"],
            input=f'{{"conversation_id": "{session}", "hook_event_name": "stop"}}'.encode(),
            env=env,
            check=True,
        )
    got = [(f["session_id"], f["seq"]) for f in spooled_fields(tmp_path / "spool")]
    assert got == [("a", 0), ("b", 0), ("a", 1), ("weird/../id with spaces", 0), ("a", 2), ("b", 1)]
    assert not any(".." in p.name for p in (tmp_path / "spool" / "seq").iterdir())
