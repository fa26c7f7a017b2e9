"""Crash rules of the spool and the shipper, with real processes and a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.brokers import Broker
from tests.hooks.util import ENTRY, ROOT, consume_events, hook_env
from workers.hooks.spool import HEAD_SIZE, Spool
from workers.shipper.shipper import Shipper


def test_crash_between_ack_and_commit_resends_the_same_keys(
    tmp_path: Path, broker: Broker, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = f"crash-{unique}"
    spool = Spool(str(tmp_path / "spool"))
    for _ in range(5):
        spool.append({"session_id": session, "ts_ms": 1, "kind": "hook", "payload": "{}"})

    def crash(*_: object) -> None:
        raise RuntimeError("killed after the acks, before the commit pointer")

    async def one_round(shipper: Shipper) -> None:
        try:
            await shipper.round()
        finally:
            await shipper._close()

    monkeypatch.setattr(spool, "write_commit", crash)
    with pytest.raises(RuntimeError):
        asyncio.run(one_round(Shipper(spool, broker.bootstrap, quiet=True)))
    monkeypatch.undo()

    again = Shipper(Spool(spool.path), broker.bootstrap, quiet=True)
    asyncio.run(again.run(linger=0))
    assert again.shipped == 5 and not spool.pending()
    got = consume_events(broker.bootstrap, 10**9, timeout=6, sessions={session})
    keys = [(e["session_id"], e["seq"]) for e in got]
    assert len(keys) == 10 and sorted(set(keys)) == [(session, i) for i in range(5)]


# Runs the hook as the lean command does, except that os.write, given a spool frame,
# writes only the first `cut` bytes of it (a negative cut: all but that many), makes
# them durable, touches the `ready` file and waits there to be killed.
STOP_INSIDE_WRITE = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
ready, cut = sys.argv[2], int(sys.argv[3])
real_write = os.write
def write(fd, data):
    if bytes(data[:2]) == b"KS":
        real_write(fd, data[:cut])
        os.fsync(fd)
        open(ready, "w").close()
        time.sleep(600)
    return real_write(fd, data)
os.write = write
from workers.hooks.hook import main
main(sys.argv[4:])
"""


def test_hooks_killed_mid_write_lose_only_themselves(tmp_path: Path) -> None:
    """SIGKILL hook processes inside their frame write: the torn frames are met and
    skipped, and every hook that exited 0 is spooled once."""
    env = hook_env(tmp_path / "spool")
    big = "x" * 200_000
    # in the header, the body, just before the end (the payload is cut to ~16 KB)
    cuts = [1, HEAD_SIZE - 1, HEAD_SIZE + 3, 8_000, -1]
    torn: list[int] = []
    survived: list[int] = []
    for i in range(3 * len(cuts) + 1):
        payload = json.dumps({"session_id": "kill", "hook_event_name": "Stop", "n": i, "pad": big})
        if i % 3 != 1:
            proc = subprocess.run(
                [sys.executable, "-I", "-S", str(ENTRY), "claude"],
                input=payload.encode(),
                env=env,
            )
            assert proc.returncode == 0
            survived.append(i)
            continue
        ready = tmp_path / f"ready-{i}"
        args = [str(ROOT), str(ready), str(cuts[i // 3]), "claude"]
        p = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", STOP_INSIDE_WRITE, *args],
            stdin=subprocess.PIPE,
            env=env,
        )
        assert p.stdin is not None
        p.stdin.write(payload.encode())
        p.stdin.close()
        deadline = time.monotonic() + 60
        while not ready.exists():  # the writer is inside its write
            assert p.poll() is None and time.monotonic() < deadline, "the hook never wrote"
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(30) == -signal.SIGKILL
        torn.append(i)
    spool = Spool(str(tmp_path / "spool"))
    spool.seal()
    spooled = [f.fields() for f in spool.sealed_frames()]
    assert [json.loads(f["payload"])["n"] for f in spooled] == survived
    seqs = [f["seq"] for f in spooled]
    assert len(seqs) == len(set(seqs))  # no seq was handed out twice
    met = (tmp_path / "spool" / "warnings.log").read_text().count("bad frame")
    assert met == len(torn)  # each torn frame was met, reported and skipped
