"""produce_events: per-session batches in seq order, keyed by session, every event acked."""

from __future__ import annotations

import asyncio
import random

from tests.brokers import Broker
from tests.hooks.util import consume_raw, decode_all
from workers.codec.batch import is_batch, split
from workers.codec.event import complete_event
from workers.hooks.samples import sample_events
from workers.shipper.producer import batches, produce_events


def test_batches_split_by_count_and_keep_seq_order() -> None:
    events = [
        complete_event({"session_id": f"s{i % 3}", "seq": i // 3, "ts_ms": i}) for i in range(30)
    ]
    random.Random(1).shuffle(events)
    out = batches(events, max_batch=4)
    assert sum(n for _, _, n in out) == 30
    assert all(n <= 4 for _, _, n in out)
    keys = {k for k, _, _ in out}
    assert keys == {b"s0", b"s1", b"s2"}


def test_produce_sample_events(broker: Broker, unique: str) -> None:
    events = sample_events()
    for e in events:
        e["session_id"] = f"{unique}-{e['session_id']}"
    sent = asyncio.run(produce_events(broker.bootstrap, events, max_batch=8))
    assert sent == len(events)
    raw = [v for v in consume_raw(broker.bootstrap, want=10**9, timeout=6) if unique.encode() in v]
    assert all(is_batch(v) and len(split(v)) <= 8 for v in raw)
    got = [e for e in decode_all(raw) if e["session_id"].startswith(unique)]
    assert sorted((e["session_id"], e["seq"]) for e in got) == sorted(
        (e["session_id"], e["seq"]) for e in events
    )
    for session in {e["session_id"] for e in events}:
        seqs = [e["seq"] for e in got if e["session_id"] == session]
        assert seqs == sorted(seqs)
