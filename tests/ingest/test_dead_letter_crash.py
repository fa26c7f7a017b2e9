"""Dead letters at least once: kill -9 between handing a dead letter to the producer and the
group commit that would cover it, with a later message of the partition already in the hot
log; after the restart the dead letter must reach the DLQ.

The worker stops itself at the test point ``dead-letter-pending`` (workers/ingest/testpoint.py);
while it is stopped the test checks that the kill lands in the window: the DLQ does not hold
the dead letter, the group has not committed its offset, and the hot log already holds a
later message of the partition (so recovery moves the watermark past the poison message).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    committed,
    end_offsets,
    event,
    indexed,
    logged_offsets,
    produce,
    read_dlq,
    start_worker,
    wait_committed,
)
from workers.ingest import testpoint
from workers.ingest.assignment import partition_for_key
from workers.settings import DLQ_TOPIC

POISON = b"\x00\x01 not an event: dead-lettered"


def _letters_of(bootstrap: str, partition: int, offset: int) -> int:
    letters = asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC))
    return sum(
        1
        for h, _ in letters
        if (h.get("partition"), h.get("offset")) == (str(partition), str(offset))
    )


def test_dead_letter_survives_kill_before_commit(
    fresh_broker: Broker, tmp_path: Path, unique: str
) -> None:
    bootstrap = fresh_broker.bootstrap
    sid = f"dlq-{unique}"
    p = partition_for_key(sid.encode(), TEST_PARTITIONS)
    data = tmp_path / "data"

    # a first run commits an offset for the group: the poison then reaches the agent, not the
    # catch-up (which reads to the end itself when the group has no committed offset)
    asyncio.run(produce(bootstrap, [(sid, event(sid, q)) for q in range(5)]))
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w1.log")
    try:
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    poison_offset = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))[p]
    later = [(sid, event(sid, q)) for q in range(5, 205)]
    asyncio.run(produce(bootstrap, [(sid, POISON), *later]))

    env = {testpoint.ENV: testpoint.DEAD_LETTER_PENDING}
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w2.log", env=env)
    try:
        deadline = time.monotonic() + 120
        while not worker.stopped():
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
            assert time.monotonic() < deadline, "the test point was never reached"
            time.sleep(0.05)
        # the window: dead letter not delivered, offset not committed, a later message logged
        assert _letters_of(bootstrap, p, poison_offset) == 0
        assert asyncio.run(committed(bootstrap, TEST_PARTITIONS)).get(p, 0) <= poison_offset
        assert logged_offsets(data, TEST_PARTITIONS)[p] > poison_offset
    finally:
        worker.kill()

    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w3.log")
    try:
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    # at least once: a dead letter delivered before the kill may come again (docs/OPERATIONS.md)
    assert _letters_of(bootstrap, p, poison_offset) >= 1
    assert indexed(data, TEST_PARTITIONS)[sid][1] == list(range(205))
