"""One plain single-object event per Kafka message, as any Avro-capable producer writes them.

A plain aiokafka producer sends every event as its own message (no ``KZB1`` batch), sessions
interleaved, some events sent twice, and malformed ones among them. The worker must index
every good event exactly once, in each session's seq order in its hot log, and dead-letter
each malformed message once with its reason.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    end_offsets,
    event,
    hot_log_events,
    indexed,
    log_events,
    produce,
    read_dlq,
    start_worker,
    wait_committed,
)
from workers.settings import DLQ_TOPIC

SESSIONS = 24
PER_SESSION = 60


def session_order(data_dir: Path) -> dict[str, list[int]]:
    """session -> its seqs in the order its partition's hot log holds them (worker stopped)."""
    out: dict[str, list[int]] = defaultdict(list)
    for ev in hot_log_events(data_dir, TEST_PARTITIONS):
        out[ev["session_id"]].append(ev["seq"])
    return out


def test_one_event_per_message(fresh_broker: Broker, tmp_path: Path) -> None:
    bootstrap = fresh_broker.bootstrap
    sids = [f"plain-{s}" for s in range(SESSIONS)]
    messages: list[tuple[str, bytes]] = []
    for seq in range(PER_SESSION):
        for sid in sids:
            messages.append((sid, event(sid, seq, payload=f"{sid}/{seq}")))
        if seq % 10 == 9:
            # a producer retrying: the last ten events of two sessions sent again
            for sid in sids[:2]:
                messages += [
                    (sid, event(sid, q, payload=f"{sid}/{q}")) for q in range(seq - 9, seq + 1)
                ]
    good = event("plain-0", 7)
    poison = {
        "truncated": event("plain-1", 1000)[:-3],
        "unknown_schema": b"\xc3\x01" + b"\x13" * 8 + good[10:],
        "trailing_bytes": event("plain-2", 1000) + b"x",
        "bad_marker": b"\xc3\x02" + good[2:],
    }
    for i, data in enumerate(poison.values()):
        # in the middle of the sessions' traffic, keyed like it (same partitions)
        messages.insert(len(messages) // 2 + i, (sids[i], data))
    asyncio.run(produce(bootstrap, messages))

    worker = start_worker(bootstrap, tmp_path / "data", TEST_PARTITIONS, tmp_path / "w.log")
    try:
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        wait_committed(bootstrap, ends, timeout=120)
        metrics = worker.metrics()
    finally:
        code = worker.stop()
    log = worker.log_text()
    assert code == 0, log[-3000:]
    assert "Restarting dead" not in log and "Crashed" not in log, log[-3000:]

    want = list(range(PER_SESSION))
    got = indexed(tmp_path / "data", TEST_PARTITIONS)
    assert {sid: seqs for sid, (_, seqs) in got.items()} == dict.fromkeys(sids, want)
    # exactly once in the log itself (a duplicate appended but never indexed shows here)
    counts = log_events(tmp_path / "data", TEST_PARTITIONS)
    assert set(counts.values()) == {1}
    assert len(counts) == SESSIONS * PER_SESSION
    # each session's events lie in its hot log in the order they were produced
    assert session_order(tmp_path / "data") == dict.fromkeys(sids, want)
    assert metrics["kaizen_ingest_duplicates_total"] == 2 * PER_SESSION
    assert metrics["kaizen_ingest_ingested_total"] == SESSIONS * PER_SESSION

    letters = asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC))
    assert sorted(h["reason"] for h, _ in letters) == sorted(poison)
    for headers, value in letters:
        assert value == poison[headers["reason"]]  # the whole message, as it came
        assert "index" not in headers  # not an event of a batch
    assert metrics["kaizen_ingest_dead_lettered_total"] == len(poison)
