"""Hooks keep working with the broker down; once it is back every event arrives once.

Real parts only: the installed lean hook command in subprocesses, the shipper
it starts on demand (detached), and the test broker stopped and started again
on the same port (Apache Kafka keeps its log; tansu keeps memory only, so each
broker run is read on its own and the union is checked).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.brokers import Broker
from tests.hooks.util import consume_events, hook_env, run_hook, shipper_pid
from workers.broker.topics import ensure_topics
from workers.hooks.samples import sample_payloads
from workers.hooks.spool import Spool

PARTITIONS = 4


def wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def test_broker_down_then_back(tmp_path: Path, fresh_broker: Broker, unique: str) -> None:
    spool_dir = tmp_path / "spool"
    env = hook_env(spool_dir, KAIZEN_BROKER=fresh_broker.bootstrap, KAIZEN_HOOK_NO_SHIP="")
    payloads = sample_payloads("claude")
    session = f"down-{unique}"
    for p in payloads:
        p["session_id"] = session
    first, second = payloads[:10], payloads[10:]

    for p in first:
        assert run_hook("claude", p, env).returncode == 0
    got1 = consume_events(fresh_broker.bootstrap, len(first), timeout=30, sessions={session})
    assert sorted(e["seq"] for e in got1) == list(range(len(first)))

    fresh_broker.stop()
    for p in second:
        assert run_hook("claude", p, env).returncode == 0
    spool = Spool(str(spool_dir))
    time.sleep(1.0)
    assert spool.pending()  # nothing can leave while the broker is down

    fresh_broker.start()  # same port: what the shipper keeps retrying
    try:
        asyncio.run(ensure_topics(fresh_broker.bootstrap, PARTITIONS))
        assert wait_for(lambda: not spool.pending(), 60)
        deadline = time.monotonic() + 60
        while True:  # resends may stand beside the originals: read until every seq is seen
            got2 = consume_events(
                fresh_broker.bootstrap, 4 * len(second), timeout=3, sessions={session}
            )
            if {e["seq"] for e in got2} >= set(range(len(first), len(payloads))):
                break
            assert time.monotonic() < deadline, sorted(e["seq"] for e in got2)
        # Every event arrives. Delivery is at-least-once: a round whose ack could not be
        # trusted (the restarted memory broker acks records for a topic it has not created
        # yet) is sent again, so a seq may stand twice in the raw topic, always as the
        # identical event; the worker's (session_id, seq) dedupe makes it once.
        by_seq: dict[int, dict[str, object]] = {}
        for e in got1 + got2:
            assert by_seq.setdefault(e["seq"], e) == e, "a resend must be the identical event"
        assert sorted(by_seq) == list(range(len(payloads)))
        assert [by_seq[len(first) + i]["tool_call_id"] for i in range(len(second))] == [
            p.get("tool_use_id") for p in second
        ]
    finally:
        pid = shipper_pid(spool_dir)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
