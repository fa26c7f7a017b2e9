"""produce_events: per-session batches in seq order, keyed by session, split at the size
limit, every event acked."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from tests.brokers import Broker
from tests.hooks.util import consume_raw, decode_all
from workers.codec.batch import is_batch, split
from workers.codec.event import complete_event, decode_event, encode_event
from workers.hooks.samples import sample_events
from workers.hooks.spool import Spool
from workers.shipper.producer import MAX_MESSAGE_BYTES, batches, produce_events
from workers.shipper.shipper import Shipper


def decoded(out: list[tuple[bytes, bytes, int]]) -> list[tuple[bytes, list[dict[str, Any]]]]:
    """Each message of `batches` as (key, its events decoded), checking its framing and count."""
    messages = []
    for key, message, n in out:
        assert is_batch(message)
        events = [decode_event(item) for item in split(message)]
        assert len(events) == n
        messages.append((key, events))
    return messages


def assert_per_session_in_seq_order(
    messages: list[tuple[bytes, list[dict[str, Any]]]], events: list[dict[str, Any]]
) -> None:
    """Every message holds one session (its key); concatenated, a session's messages
    give exactly its events in seq order."""
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for key, evs in messages:
        assert {e["session_id"].encode() for e in evs} == {key}
        by_key.setdefault(key, []).extend(evs)
    expected: dict[bytes, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: (e["session_id"], e["seq"])):
        expected.setdefault(e["session_id"].encode(), []).append(e)
    assert by_key == expected


def test_batches_split_by_count_and_keep_seq_order() -> None:
    events = [
        complete_event({"session_id": f"s{i % 3}", "seq": i // 3, "ts_ms": i}) for i in range(30)
    ]
    random.Random(1).shuffle(events)
    out = batches(events, max_batch=4)
    assert sum(n for _, _, n in out) == 30
    assert all(n <= 4 for _, _, n in out)
    assert sorted(n for _, _, n in out) == [2, 2, 2] + [4] * 6  # 10 per session: 4 + 4 + 2
    assert_per_session_in_seq_order(decoded(out), events)


def test_batches_split_at_the_message_size_limit() -> None:
    limit = 50_000
    events = [
        complete_event({"session_id": "big", "seq": i, "ts_ms": i, "payload": "p" * (900 + 97 * i)})
        for i in range(120)
    ]
    random.Random(2).shuffle(events)
    out = batches(events, max_batch=1000, max_message_bytes=limit)
    assert len(out) > 1 and all(len(message) <= limit for _, message, _ in out)
    assert_per_session_in_seq_order(decoded(out), events)
    # split at the limit, not before it: the next event would not have fitted
    items = [encode_event(e) for e in sorted(events, key=lambda e: e["seq"])]
    start = 0
    for _, message, n in out[:-1]:
        assert len(message) + 4 + len(items[start + n]) > limit
        start += n


def test_shipper_splits_at_the_message_size_limit(
    tmp_path: Path, broker: Broker, unique: str
) -> None:
    """A backlog of big events leaves as several messages, each under the broker's limit."""
    session = f"big-{unique}"
    spool = Spool(str(tmp_path / "spool"))
    for i in range(40):
        fields = {"session_id": session, "ts_ms": i, "kind": "hook", "payload": "p" * 100_000}
        spool.append(fields)
    shipper = Shipper(spool, broker.bootstrap, quiet=True)
    asyncio.run(shipper.run(linger=0, give_up=15))
    assert shipper.shipped == 40 and not spool.pending()
    raw = [v for v in consume_raw(broker.bootstrap, want=10**9, timeout=8) if session.encode() in v]
    assert len(raw) >= 5 and all(len(v) <= MAX_MESSAGE_BYTES for v in raw)
    assert [e["seq"] for e in decode_all(raw)] == list(range(40))


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
