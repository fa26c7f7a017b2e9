"""Live token capture, shipper side: read the transcripts hooks noted, spool usage events.

Files (in the spool directory, beside those of workers/hooks/spool.py):

    usage/pending/<key>    written by hooks (workers/hooks/usage.py `note`): a
                           transcript with news, and its session
    usage/cursor/<key>     how far that transcript was read: byte offset, line
                           index and, for Codex, the running token totals

Invariants:
- Events first, cursor after: the usage events of a read are appended to the
  spool (fsynced) before the cursor moves past their lines. A crash between
  the two reads those lines again, and their events get the same keys
  (workers/hooks/usage.py derives them from the message id or line index),
  which the worker's (session_id, producer, seq) dedupe keeps once (producer ""
  for them: `Spool.append` sets a producer only on the seqs it numbers).
- A note is removed only if no hook rewrote it while it was being read
  (compared by inode and mtime); otherwise the next round reads again.
- Redaction: model names and counts are not secret, but the workspace and
  host go through the same Redactor as hook payloads.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from workers.durable import atomic_write
from workers.hooks.redact import Redactor
from workers.hooks.spool import Spool
from workers.hooks.usage import (
    claude_usage,
    codex_state,
    codex_usage,
    note_key,
    pending_dir,
    read_lines,
)


def cursor_dir(spool: Spool) -> str:
    return os.path.join(spool.path, "usage", "cursor")


def codex_sessions_dir() -> str:
    home = os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    return os.path.join(home, "sessions")


def find_rollout(thread_id: str, root: str | None = None) -> str | None:
    """The rollout file of a Codex thread (its name ends with the thread id), newest first."""
    root = root or codex_sessions_dir()
    suffix = f"-{thread_id}.jsonl"
    found: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files if f.endswith(suffix)]
    return max(found, key=os.path.getmtime) if found else None


def _load_cursor(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        if isinstance(value, dict):
            return value
    except (FileNotFoundError, ValueError):
        pass
    return {}


def read_pending(
    spool: Spool, note_path: str, redactor: Redactor, host: str | None
) -> tuple[int, bool]:
    """Read one noted transcript past its cursor; (events spooled, whether it is done)."""
    st = os.stat(note_path)
    with open(note_path, encoding="utf-8") as f:
        text = f.read()
    try:
        note = json.loads(text)
    except ValueError:
        note = None
    if not isinstance(note, dict):
        spool.warn(f"usage capture: dropped the unreadable note {note_path}")
        os.unlink(note_path)
        return 0, True
    agent = note.get("agent")
    transcript = note.get("transcript")
    if not isinstance(transcript, str):
        return 0, True
    cpath = os.path.join(cursor_dir(spool), note_key(transcript))
    cursor = _load_cursor(cpath)
    path = cursor.get("path") or transcript
    if transcript.startswith("codex-thread:"):
        path = cursor.get("path") or find_rollout(transcript.split(":", 1)[1])
        if path is None:
            return 0, True  # no rollout file on this machine: nothing to read
    if not os.path.exists(path):
        return 0, True
    offset = int(cursor.get("offset", 0))
    index = int(cursor.get("line", 0))
    if os.path.getsize(path) < offset:  # the file was replaced: read it anew
        offset, index, cursor = 0, 0, {}
    lines, new_offset = read_lines(path, offset)
    if agent == "codex":
        state = cursor.get("codex") or codex_state()
        if note.get("session_id") and not state.get("session_id"):
            state["session_id"] = note["session_id"]
        events = codex_usage(lines, index, state)
        cursor["codex"] = state
    else:
        events = claude_usage(lines, note.get("session_id"))
    for ev in events:
        ev["source"] = "tail"
        if not ev["ts_exact"]:
            ev["ts_ms"] = int(time.time() * 1000)
        ev["host"] = host
        if ev.get("workspace"):
            ev["workspace"] = redactor.text(ev["workspace"])
        ev["session_id"] = redactor.text(ev["session_id"])
        if spool.append(ev, seq=ev.pop("seq")) is None:
            return 0, False  # spool full: the cursor stays, the next round reads again
    cursor.update(path=path, offset=new_offset, line=index + len(lines))
    os.makedirs(cursor_dir(spool), mode=0o700, exist_ok=True)
    atomic_write(cpath, json.dumps(cursor).encode(), mode=0o600)
    done = new_offset >= os.path.getsize(path) or not lines
    try:
        now = os.stat(note_path)
        if done and (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns):
            os.unlink(note_path)
    except FileNotFoundError:
        pass
    return len(events), done


def capture_pending(spool: Spool, redactor: Redactor | None = None) -> int:
    """Read every noted transcript; the number of usage events spooled."""
    directory = pending_dir(spool.path)
    try:
        names = sorted(n for n in os.listdir(directory) if not n.endswith(".tmp"))
    except FileNotFoundError:
        return 0
    if not names:
        return 0
    redactor = redactor or Redactor.from_config()
    host = redactor.text(os.uname().nodename)
    total = 0
    for name in names:
        try:
            total += read_pending(spool, os.path.join(directory, name), redactor, host)[0]
        except Exception as exc:  # one bad transcript must not stop shipping
            spool.warn(f"usage capture {name}: {type(exc).__name__}: {exc}")
    return total
