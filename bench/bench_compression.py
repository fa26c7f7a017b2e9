"""Bytes on the wire per event for each producer compression, on the bundled sample sessions.

The sample sessions (workers/samples: the hook sessions of Claude Code, Cursor
and Codex, and the two transcripts `import` reads) become Events exactly as
the hook and importer make them, then Kafka record batches exactly as the
shipper's producer builds them (aiokafka's DefaultRecordBatchBuilder, the
codec of KAIZEN_COMPRESSION): the bytes a producer sends per event, record
batch headers included, request framing excluded. Two ways of shipping:

  live     the shipper sends each hook call as it comes: one event per
           message, one message per record batch (the least compression gets)
  backlog  a spool that waited (broker down, laptop offline, `import`): each
           session as batch messages of up to 128 events, one per record batch

    .venv/bin/python bench/bench_compression.py
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder  # noqa: E402

from workers.codec.event import complete_event, encode_event  # noqa: E402
from workers.hooks.redact import Redactor  # noqa: E402
from workers.hooks.samples import SAMPLES_DIR, sample_events  # noqa: E402
from workers.importer.transcripts import transcript_events  # noqa: E402
from workers.settings import COMPRESSIONS  # noqa: E402
from workers.shipper.producer import batches  # noqa: E402

CODECS = {
    "none": 0,
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}
assert set(CODECS) == set(COMPRESSIONS)


def record_batch(codec: int, messages: Iterable[tuple[bytes, bytes]]) -> int:
    """Bytes of one record batch holding `messages` (key, value), as a producer builds it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=1000,  # an idempotent producer's fields: same size as none
        producer_epoch=0,
        base_sequence=0,
        batch_size=1 << 24,
    )
    for offset, (key, value) in enumerate(messages):
        builder.append(
            offset, timestamp=1_795_166_043_000 + offset, key=key, value=value, headers=[]
        )
    return len(builder.build())


def sample_sessions() -> list[dict[str, Any]]:
    events = list(sample_events())
    redactor = Redactor.from_config()
    for path in sorted(glob.glob(os.path.join(SAMPLES_DIR, "transcripts", "*.jsonl"))):
        events += [complete_event(f) for f in transcript_events(path, redactor)]
    return events


def main() -> None:
    events = sample_sessions()
    sessions = len({e["session_id"] for e in events})
    raw = sum(len(encode_event(e)) for e in events)
    live = [(str(e["session_id"]).encode(), encode_event(e)) for e in events]
    backlog = [(key, message) for key, message, _ in batches(events)]
    print(
        f"{len(events)} events in {sessions} sample sessions; Avro event {raw / len(events):.0f} "
        f"bytes on average; {len(backlog)} batch messages in backlog mode\n"
    )
    print(
        f"{'codec':<8} {'live B/event':>13} {'ratio':>6} {'backlog B/event':>16} {'ratio':>6} "
        f"{'µs/event':>9}"
    )
    base: dict[str, float] = {}
    for name, codec in CODECS.items():
        t0 = time.perf_counter()
        live_bytes = sum(record_batch(codec, [m]) for m in live)
        backlog_bytes = sum(record_batch(codec, [m]) for m in backlog)
        took = (time.perf_counter() - t0) / (2 * len(events)) * 1e6
        per_live, per_backlog = live_bytes / len(events), backlog_bytes / len(events)
        base.setdefault("live", per_live)
        base.setdefault("backlog", per_backlog)
        print(
            f"{name:<8} {per_live:>13.0f} {per_live / base['live']:>6.2f} "
            f"{per_backlog:>16.0f} {per_backlog / base['backlog']:>6.2f} {took:>9.1f}"
        )


if __name__ == "__main__":
    main()
