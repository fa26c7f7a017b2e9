"""One event the shipper cannot send never stops the others (issue 12, item 6).

Real parts: a real spool, the real `kaizen-stream ship` process, the embedded
broker. What cannot be sent goes to `<spool>/quarantine.jsonl` with its reason;
everything else arrives and the spool drains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.brokers import Broker
from tests.hooks.util import ROOT, consume_events, hook_env, run_hook
from workers.hooks.spool import Spool, encode_frame
from workers.shipper.shipper import status


def ship(spool: Path, bootstrap: str) -> subprocess.CompletedProcess[bytes]:
    """`kaizen-stream ship` once; on the old code it retries until --give-up, then exits."""
    args = ["ship", "--spool-dir", str(spool), "--broker", bootstrap, "--give-up", "20"]
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=180,
    )


def quarantined(spool: Path) -> list[dict[str, Any]]:
    path = spool / "quarantine.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def good(session: str) -> dict[str, Any]:
    return {"session_id": session, "ts_ms": 1, "kind": "hook", "agent": "claude", "payload": "{}"}


def test_unsendable_frames_are_quarantined_and_the_rest_ships(
    tmp_path: Path, broker: Broker, unique: str
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(str(spool_dir))
    session, other = f"bad-{unique}", f"other-{unique}"
    for _ in range(3):
        spool.append(good(session))
        spool.append(good(other))
    # what an older hook (or a foreign writer) may have spooled:
    spool.append({**good(session), "retry_count": 2**40})  # int out of Avro int range
    spool.append({**good(session), "latency_ms": 2**70})  # out of Avro long range
    spool.append({**good(session), "no_such_field": 1})  # not a field of Event
    spool.append({**good(session), "payload": "x" * 1_000_000})  # over the message limit
    last = spool.segments()[-1]
    with open(spool.seg_path(last), "ab") as f:  # a frame whose CRC checks but is not JSON
        f.write(encode_frame(b"not json at all"))
    for _ in range(3):
        spool.append(good(session))
        spool.append(good(other))

    proc = ship(spool_dir, broker.bootstrap)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]

    got = consume_events(broker.bootstrap, 10**9, timeout=8, sessions={session, other})
    keys = sorted((e["session_id"], e["seq"]) for e in got)
    assert sorted(set(keys)) == sorted(
        [(session, s) for s in (0, 1, 2, 7, 8, 9)] + [(other, s) for s in range(6)]
    )
    assert not spool.pending()

    q = quarantined(spool_dir)
    reasons = [r["reason"] for r in q]
    assert len(q) == 5, reasons
    assert sum("retry_count" in r for r in reasons) == 1
    assert sum("latency_ms" in r for r in reasons) == 1
    assert sum("no_such_field" in r for r in reasons) == 1
    assert sum("message limit" in r for r in reasons) == 1
    assert sum("not JSON" in r for r in reasons) == 1
    seqs = sorted(json.loads(r["body"]).get("seq", -1) for r in q if r["body"] != "not json at all")
    assert seqs == [3, 4, 5, 6]
    assert all(r["segment"] >= 0 and r["offset"] >= 0 and r["time"] for r in q)
    assert status(spool)["quarantined"] == 5
    assert "cannot be sent" in (spool_dir / "warnings.log").read_text()


def test_hook_payload_with_huge_numbers_ships(tmp_path: Path, broker: Broker, unique: str) -> None:
    """Payload numbers out of their Avro range leave the field null and stay in payload."""
    spool_dir = tmp_path / "spool"
    env = hook_env(spool_dir)
    session = f"huge-{unique}"
    payloads: list[dict[str, Any]] = [
        {
            "hook_event_name": "stop",
            "conversation_id": session,
            "status": "completed",
            "loop_count": 2**40,
        },
        {"hook_event_name": "afterShellExecution", "conversation_id": session, "duration": 1e300},
        {
            "hook_event_name": "afterShellExecution",
            "conversation_id": session,
            "duration": -(2**64),
        },
        {"hook_event_name": "afterShellExecution", "conversation_id": session, "duration": 12},
        {
            "hook_event_name": "beforeSubmitPrompt",
            "conversation_id": session,
            "prompt": "half a pair \ud800",
            "model": "m\udfff",
        },
    ]
    for p in payloads:
        assert run_hook("cursor", p, env).returncode == 0
    assert not (spool_dir / "warnings.log").exists()

    proc = ship(spool_dir, broker.bootstrap)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    got = sorted(
        consume_events(broker.bootstrap, 10**9, timeout=8, sessions={session}),
        key=lambda e: e["seq"],
    )
    assert [e["seq"] for e in got] == [0, 1, 2, 3, 4]
    assert got[0]["retry_count"] is None and json.loads(got[0]["payload"])["loop_count"] == 2**40
    assert [e["latency_ms"] for e in got[1:4]] == [None, None, 12]
    assert got[4]["model"] == "m?" and "half a pair ?" in got[4]["payload"]
    assert quarantined(spool_dir) == []
    assert os.path.exists(spool_dir) and not Spool(str(spool_dir)).pending()
