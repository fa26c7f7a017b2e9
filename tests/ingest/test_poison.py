"""Poison among valid events: every valid event is ingested, every bad one dead-lettered once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    end_offsets,
    event,
    indexed,
    produce,
    read_dlq,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.codec import batch
from workers.ingest.decode import DEFAULT_MAX_EVENT_BYTES
from workers.settings import DLQ_TOPIC


def test_poison_mix(fresh_broker: Broker, tmp_path: Path) -> None:
    bootstrap = fresh_broker.bootstrap
    messages: list[tuple[str, bytes]] = []
    expected: dict[str, int] = {}
    for s in range(12):
        sid = f"good-{s}"
        expected[sid] = 150
        messages += session_messages(sid, range(150), [1, 7, 64, 128])
    good = event("mixed", 0)
    bad_utf8 = event("mixed", 2, payload="ok-payload").replace(b"ok-payload", b"ok-\xff\xfeyload")
    big = event("mixed", 3, payload="x" * (10 << 20))
    poison = {
        "garbage": (b"\x00\x01garbage that is not avro at all", "bad_marker"),
        "marker": (b"\xc3\x02" + good[2:], "bad_marker"),
        "fingerprint": (b"\xc3\x01" + b"\x13" * 8 + good[10:], "unknown_schema"),
        "empty-sid": (event("", 1), "empty_session_id"),
        "utf8": (bad_utf8, "invalid_utf8"),
        "huge": (big, "too_large"),
        "framing": (batch.join([good])[:-2], "bad_batch"),
    }
    for name, (data, _) in poison.items():
        messages.append((f"poison-{name}", data))
    # a batch holding a bad event between good ones: the good ones are ingested
    mixed = [event("mixed", 0), bad_utf8, event("mixed", 1), event("", 1)]
    messages.append(("mixed", batch.join(mixed)))
    expected["mixed"] = 2
    counts = asyncio.run(produce(bootstrap, messages))
    assert sum(counts.values()) == len(messages)

    worker = start_worker(bootstrap, tmp_path / "data", TEST_PARTITIONS, tmp_path / "w.log")
    try:
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        wait_committed(bootstrap, ends, timeout=90)
        metrics = worker.metrics()
        assert worker.proc.poll() is None
    finally:
        code = worker.stop()
    log = worker.log_text()
    assert code == 0, log[-3000:]
    assert "Restarting dead" not in log and "Crashed" not in log, log[-3000:]

    got = indexed(tmp_path / "data", TEST_PARTITIONS)
    assert {sid: len(seqs) for sid, (_, seqs) in got.items()} == expected
    assert got["mixed"][1] == [0, 1]

    letters = asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC))
    reasons = sorted(h["reason"] for h, _ in letters)
    want = sorted([r for _, r in poison.values()] + ["invalid_utf8", "empty_session_id"])
    assert reasons == want
    for headers, value in letters:
        assert {"reason", "detail", "source_topic", "partition", "offset"} <= headers.keys()
        assert headers["source_topic"] == "kaizen.events"
        if headers["reason"] == "too_large":
            assert int(headers["original_size"]) > DEFAULT_MAX_EVENT_BYTES
        elif headers["reason"] == "invalid_utf8" and "index" in headers:
            assert value == bad_utf8  # the bad event's bytes alone
    assert metrics["kaizen_ingest_dead_lettered_total"] == len(want)
    time.sleep(0)
