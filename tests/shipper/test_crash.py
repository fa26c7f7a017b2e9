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
from tests.hooks.util import ENTRY, consume_events, hook_env, spooled_fields
from workers.hooks.spool import Spool
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


def test_hooks_killed_mid_write_lose_only_themselves(tmp_path: Path) -> None:
    """SIGKILL some hook processes at random moments: every hook that exited 0 is spooled."""
    env = hook_env(tmp_path / "spool")
    big = "x" * 200_000  # a large payload makes the write window wide enough to hit
    procs = []
    for i in range(30):
        p = subprocess.Popen(
            [sys.executable, "-I", "-S", str(ENTRY), "claude"],
            stdin=subprocess.PIPE,
            env=env,
        )
        assert p.stdin is not None
        payload = {"session_id": "kill", "hook_event_name": "Stop", "n": i, "pad": big}
        p.stdin.write(json.dumps(payload).encode())
        p.stdin.close()
        procs.append(p)
        if i % 3 == 2:
            time.sleep(0.003 * (i % 7))
            os.kill(p.pid, signal.SIGKILL)
    codes = [p.wait(30) for p in procs]
    survived = {i for i, c in enumerate(codes) if c == 0}
    spool = Spool(str(tmp_path / "spool"))
    spool.seal()
    spooled = [f.fields() for f in spool.sealed_frames()]
    ns = [json.loads(f["payload"])["n"] for f in spooled]
    assert survived <= set(ns)  # nothing that returned was lost
    seqs = [f["seq"] for f in spooled]
    assert len(seqs) == len(set(seqs))  # and no seq was handed out twice
    assert len(spooled_fields(tmp_path / "spool")) == len(spooled)
