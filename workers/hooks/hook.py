"""One hook call: read the payload, redact, map, spool, maybe start a shipper.

Used by the lean entry (`_entry.py`) and by `kaizen-stream hook <agent>`.
Invariants (docs/ARCHITECTURE.md, 7 and 8):

- Stdlib only, and cheap: no typing/dataclasses/subprocess at import.
- Redaction runs on the parsed payload before anything is derived from it,
  so every Event field and the spooled bytes are redacted.
- Never raises and never blocks on the network: errors go to the spool's
  warnings.log; exit status is always 0.
- Output: nothing, except Cursor's `beforeSubmitPrompt`, which gets
  `{"continue": true}` (proceed unchanged). Cursor's permission hooks
  (beforeShellExecution, beforeMCPExecution, beforeReadFile, preToolUse) get
  no output by default: without `failClosed` Cursor then proceeds with its own
  approval flow, whereas `{"permission": "allow"}` could skip a prompt the
  user would have seen. `KAIZEN_CURSOR_PERMISSION=allow` prints that instead.
- Codex's legacy `notify` passes its JSON as the last argument, not on stdin.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from workers.hooks import fastjson
from workers.hooks.mapping import clip, map_payload
from workers.hooks.redact import Redactor
from workers.hooks.spool import Spool, rotate_log
from workers.hooks.usage import note as note_usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGENTS = ("claude", "cursor", "codex")
CURSOR_PERMISSION_EVENTS = frozenset(
    ("beforeShellExecution", "beforeMCPExecution", "beforeReadFile", "preToolUse")
)
MAX_STDIN = 32 << 20


def read_payload(args: list[str]) -> Any:
    """The hook's JSON: the last argument when it looks like JSON (Codex notify), else stdin."""
    raw: str | bytes
    if args and args[-1].lstrip().startswith("{"):
        raw = args[-1]
    else:
        raw = sys.stdin.buffer.read(MAX_STDIN) if not sys.stdin.isatty() else b""
    if not raw:
        return {}
    try:
        return fastjson.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return {"unparsed": text}


def reply(agent: str, payload: Any) -> str:
    """What to print so the agent proceeds unchanged ('' = print nothing)."""
    if agent != "cursor" or not isinstance(payload, dict):
        return ""
    event = payload.get("hook_event_name")
    if event == "beforeSubmitPrompt":
        return '{"continue": true}'
    if event in CURSOR_PERMISSION_EVENTS and os.environ.get("KAIZEN_CURSOR_PERMISSION") == "allow":
        return '{"permission": "allow"}'
    return ""


def record(agent: str, payload: Any, spool: Spool, redactor: Redactor | None = None) -> int | None:
    """Redact, map and spool one payload; the seq it got (None when the spool is full)."""
    redactor = redactor or Redactor.from_config()
    clean = redactor.obj(clip(payload))
    host = os.uname().nodename
    fields = map_payload(agent, clean, int(time.time() * 1000), redactor.text(host))
    return spool.append(fields)


def spawn_shipper(spool: Spool) -> bool:
    """Start a detached `kaizen-stream ship --linger` unless a shipper holds shipper.lock.

    The hook takes the lock itself (non-blocking, microseconds) and hands the
    locked descriptor to the shipper it starts, so hooks that run while the
    shipper is still starting up see the lock held and start no other.
    """
    if os.environ.get("KAIZEN_HOOK_NO_SHIP"):
        return False
    try:
        fd = os.open(spool.shipper_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [sys.executable, "-c", _SHIP_CODE, root, spool.path, str(fd)]
    pid = os.fork()
    if pid == 0:  # child: new session, fork again so the shipper is nobody's child
        try:
            os.setsid()
            if os.fork() == 0:
                os.set_inheritable(fd, True)
                devnull = os.open(os.devnull, os.O_RDWR)
                log_path = os.path.join(spool.path, "shipper.log")
                rotate_log(log_path)
                log = os.open(
                    log_path,
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                    0o600,
                )
                os.dup2(devnull, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.execv(sys.executable, argv)
        finally:
            os._exit(0)
    os.close(fd)  # the shipper's copy keeps the lock
    os.waitpid(pid, 0)
    return True


# Run without -I -S: the shipper needs site-packages (aiokafka, fastavro).
_SHIP_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); from workers.cli import main; "
    "sys.exit(main(['ship', '--spool-dir', sys.argv[2], '--linger', '30', "
    "'--lock-fd', sys.argv[3]]))"
)


def apply_options(args: list[str]) -> list[str]:
    """Take `--broker=HOST:PORT` / `--spool-dir=PATH` (written by `hooks install`) off args.

    They become KAIZEN_BROKER / KAIZEN_SPOOL_DIR for this process and the
    shipper it may start, so the agent's environment need not carry them.
    """
    rest = []
    for arg in args:
        if arg.startswith("--broker="):
            os.environ["KAIZEN_BROKER"] = arg[9:]
        elif arg.startswith("--spool-dir="):
            os.environ["KAIZEN_SPOOL_DIR"] = arg[12:]
        else:
            rest.append(arg)
    return rest


def main(args: list[str]) -> int:
    args = apply_options(args)
    agent = args[0] if args and args[0] in AGENTS else "other"
    spool = Spool()
    payload: Any = {}
    try:
        payload = read_payload(args[1:])
        record(agent, payload, spool)
        note_usage(agent, payload, spool.path)  # the shipper reads the tokens (live capture)
    except Exception as exc:
        try:
            spool.ensure()
            spool.warn(f"hook {agent}: {type(exc).__name__}: {exc}")
        except Exception:
            pass
    try:  # noqa: SIM105 - contextlib costs import time on the hook path
        spawn_shipper(spool)
    except Exception:
        pass
    out = reply(agent, payload)
    if out:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return 0
