"""One session fed by two machines (issue 12.2): real hooks, two spools, two shipper
processes, a real worker and `replay`.

Each spool numbers the session's events from 0, so (session_id, seq) alone collides across
machines; the key is (session_id, producer, seq), the producer being each spool's own id.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.brokers import Broker
from tests.e2e.test_end_to_end import replay
from tests.hooks.util import ROOT, hook_env, run_hook, spooled_fields


def ship(spool: Path, bootstrap: str) -> subprocess.Popen[bytes]:
    """`kaizen-stream ship` of one spool, as its own process (it exits once drained)."""
    args = ["ship", "--spool-dir", str(spool), "--broker", bootstrap, "--give-up", "60"]
    return subprocess.Popen(
        [sys.executable, "-m", "workers", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def hook(spool: Path, session: str, machine: str, n: int) -> None:
    payload = {
        "session_id": session,
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": f"echo {machine} {n}"},
    }
    assert run_hook("claude", payload, hook_env(spool)).returncode == 0


def replay_count(broker: Broker, data: Path, session: str, want: int) -> list[dict[str, object]]:
    """The session's replay once it holds `want` events (or fails with what it held)."""
    deadline = time.monotonic() + 180
    while True:
        result = replay(broker, data, session)
        events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        if result.returncode == 0 and len(events) >= want:
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"{len(events)} of {want} events replayed; {result.stderr.strip()}")
        time.sleep(0.5)


def command(event: dict[str, object]) -> str:
    return str(json.loads(str(event["payload"]))["tool_input"]["command"])


def test_one_session_from_two_spools_replays_every_event_once(
    broker: Broker, worker: subprocess.Popen[bytes], tmp_path: Path, unique: str
) -> None:
    session = f"two-machines-{unique}"
    a, b = tmp_path / "spool-a", tmp_path / "spool-b"
    for n in range(20):
        hook(a, session, "a", n)
        hook(b, session, "b", n)
    seqs = {s: sorted(int(f["seq"]) for f in spooled_fields(s)) for s in (a, b)}
    assert seqs[a] == seqs[b] == list(range(20))  # each spool counts from 0: the collision
    # machine a's spool as it was before shipping: shipped again later, it is a resend
    # (a shipper killed between the broker's acks and its commit pointer)
    resend = tmp_path / "spool-a-again"
    shutil.copytree(a, resend)

    shippers = [ship(a, broker.bootstrap), ship(b, broker.bootstrap)]
    for proc in shippers:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out.decode()
    data = tmp_path / "data"
    events = replay_count(broker, data, session, 40)
    assert len(events) == 40
    want = sorted([f"echo a {n}" for n in range(20)] + [f"echo b {n}" for n in range(20)])
    assert sorted(command(e) for e in events) == want
    keys = {(e["producer"], e["seq"]) for e in events}
    assert len(keys) == 40
    # each event carries its spool's own producer id (made once, kept in the spool dir)
    ids = {m: (s / "producer").read_text().strip() for m, s in (("a", a), ("b", b))}
    assert ids["a"] != ids["b"] and all(ids.values())
    assert all(e["producer"] == ids[command(e).split()[1]] for e in events)

    # The resend of all 20 of a's events, then one new event of a: once that one replays,
    # the resend (before it in the same partition) was ingested, and it was deduped.
    hook(resend, session, "a", 20)
    proc = ship(resend, broker.bootstrap)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out.decode()
    events = replay_count(broker, data, session, 41)
    assert sorted(command(e) for e in events) == sorted([*want, "echo a 20"])
    # replay order: by seq, then producer (each machine's events in its own order)
    order = [(int(str(e["seq"])), str(e["producer"])) for e in events]
    assert order == sorted(order)
    assert worker.poll() is None
