"""Batches compressed with every codec Kafka has, from a plain producer, are all ingested.

Any producer may compress (the worker does not choose): gzip, snappy, lz4 and
zstd batches from a plain aiokafka producer, mixed in one topic with
uncompressed ones, all end up in the hot log, with nothing dead-lettered and
the worker never restarting its agent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    end_offsets,
    indexed,
    produce,
    read_dlq,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.settings import DLQ_TOPIC

CODECS = (None, "gzip", "snappy", "lz4", "zstd")


def test_every_compression_codec_is_ingested(fresh_broker: Broker, tmp_path: Path) -> None:
    bootstrap = fresh_broker.bootstrap
    expected: dict[str, int] = {}
    for codec in CODECS:
        messages = []
        for s in range(4):
            sid = f"{codec or 'none'}-{s}"
            expected[sid] = 50
            messages += session_messages(sid, range(50), [1, 1, 5, 16])
        asyncio.run(produce(bootstrap, messages, compression=codec))

    worker = start_worker(bootstrap, tmp_path / "data", TEST_PARTITIONS, tmp_path / "w.log")
    try:
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        wait_committed(bootstrap, ends, timeout=120)
    finally:
        code = worker.stop()
    log = worker.log_text()
    assert code == 0, log[-3000:]
    assert "Restarting dead" not in log and "Crashed" not in log, log[-3000:]
    got = indexed(tmp_path / "data", TEST_PARTITIONS)
    assert {sid: seqs for sid, (_, seqs) in got.items()} == {
        sid: list(range(n)) for sid, n in expected.items()
    }
    assert asyncio.run(read_dlq(bootstrap, TEST_PARTITIONS, DLQ_TOPIC)) == []
