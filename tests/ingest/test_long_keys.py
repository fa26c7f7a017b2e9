"""Issue 12.1: an event whose key field is too long for the index is dead-lettered at decode.

Before the fix, an event with a 70,000-character session id was appended to the hot log, the
index commit then failed (an index key holds at most 65,535 bytes of session id), and the
partition never moved again: none of the events after it was indexed, nothing reached the
dead-letter topic, and a restart failed the same way in the index rebuild.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    ROOT,
    end_offsets,
    event,
    indexed,
    produce,
    read_dlq,
    start_worker,
    wait_committed,
)
from workers.ingest.decode import MAX_KEY_BYTES
from workers.settings import DLQ_TOPIC

GOOD = "good-after-a-long-id"


def replay(bootstrap: str, data_dir: Path, session_id: str) -> list[dict[str, object]]:
    env = {
        **os.environ,
        "KAIZEN_BROKER": bootstrap,
        "KAIZEN_DATA_DIR": str(data_dir),
        "KAIZEN_PARTITIONS": str(TEST_PARTITIONS),
    }
    done = subprocess.run(
        [sys.executable, "-m", "workers", "replay", session_id, "--format", "jsonl"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_a_long_session_id_is_dead_lettered_and_the_partition_moves_on(
    fresh_broker: Broker, tmp_path: Path
) -> None:
    bootstrap = fresh_broker.bootstrap
    long_sid = "L" * 70_000
    bad = event(long_sid, 0)
    # one Kafka key for all: the bad event and the 200 good ones share a partition
    messages = [(GOOD, bad)] + [(GOOD, event(GOOD, seq)) for seq in range(200)]
    counts = asyncio.run(produce(bootstrap, messages))
    assert list(counts.values()) == [201]

    data = tmp_path / "data"
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w.log")
    try:
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        wait_committed(bootstrap, ends, timeout=120)
        replayed = replay(bootstrap, data, GOOD)
        assert worker.proc.poll() is None
    finally:
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]
    assert [e["seq"] for e in replayed] == list(range(200))
    assert {sid: seqs for sid, (_, seqs) in indexed(data, TEST_PARTITIONS).items()} == {
        GOOD: list(range(200))
    }

    letters = asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC))
    assert [(h["reason"], value) for h, value in letters] == [("key_too_long", bad)]
    detail = letters[0][0]["detail"]
    assert "session_id" in detail and str(MAX_KEY_BYTES) in detail, detail
