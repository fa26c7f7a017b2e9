"""Healing's pieces on a real hot log and index (no broker): span, merge, what to append, append."""

from __future__ import annotations

import os
from pathlib import Path

from tests.replay.conftest import make_events
from workers.codec.event import encode_event
from workers.hotlog import CorruptFrame, Location, PartitionLog, frame, segment
from workers.ingest import heal
from workers.ingest.decode import Decoded, LeanDecoder
from workers.settings import EVENTS_TOPIC
from workers.state import PartitionStore
from workers.state.rebuild import rebuild_partition

DECODER = LeanDecoder()


def _ingest(directory: Path) -> tuple[list[list[Decoded]], dict[tuple[str, int], Location]]:
    """Messages at offsets 10, 11, 12, two events each, appended, fsynced and indexed."""
    events = make_events("heal-s", 6)
    messages = [[DECODER.event(encode_event(e)) for e in events[i : i + 2]] for i in range(0, 6, 2)]
    locations: dict[tuple[str, int], Location] = {}
    with PartitionLog.open(directory, topic=EVENTS_TOPIC, partition=0) as log:
        store = PartitionStore.open(directory, 0)
        batch = store.begin()
        for offset, message in enumerate(messages, start=10):
            locs = log.append_batch([ev.data for ev in message], offset)
            for ev, loc in zip(message, locs, strict=True):
                batch.add(ev.session_id, ev.seq, loc, ev.ts_ms, ev.agent, ev.model)
                locations[(ev.session_id, ev.seq)] = loc
        log.flush()
        batch.commit(12)
        store.close()
    return messages, locations


def _flip(directory: Path, loc: Location) -> None:
    fd = os.open(directory / segment.name(loc.segment), os.O_RDWR)
    try:
        where = loc.position + frame.HEAD_SIZE + loc.length // 2
        (byte,) = os.pread(fd, 1, where)
        os.pwrite(fd, bytes([byte ^ 0xFF]), where)
    finally:
        os.close(fd)


def test_span_append_and_rebuild(tmp_path: Path) -> None:
    messages, locations = _ingest(tmp_path)
    damaged = locations[("heal-s", 2)]  # the first event of the message at offset 11
    assert sorted(p.name for p in tmp_path.glob("*.seg")) == [segment.name(10)]
    _flip(tmp_path, damaged)
    with PartitionLog.open(tmp_path, topic=EVENTS_TOPIC, partition=0) as log:
        store = PartitionStore.open(tmp_path, 0)
        try:
            # bounded by the good frames around it: seq 1 (offset 10) and seq 3 (offset 11)
            assert heal.span_of(log, damaged.segment, damaged.position) == heal.Span(10, 11)
            source = [ev for message in messages for ev in message]
            todo = heal.unreadable(log, store, source + source)
            assert [(ev.session_id, ev.seq) for ev in todo] == [("heal-s", 2)]
            assert heal.apply(log, store, todo) == 1
            assert heal.unreadable(log, store, source) == []  # healing again appends nothing
            assert store.watermark == 12
            assert log.read(store.location("heal-s", 2)) == source[2].data  # type: ignore[arg-type]
            assert [seq for seq, _ in store.locations("heal-s")] == list(range(6))
            assert store.session("heal-s").count == 6  # type: ignore[union-attr]
        finally:
            store.close()
    # a rebuild from the log keeps the one readable copy of each seq, and the watermark
    store = rebuild_partition(tmp_path, 0)
    try:
        with PartitionLog.open(tmp_path, topic=EVENTS_TOPIC, partition=0) as log:
            got = [log.read(loc) for _, loc in store.locations("heal-s")]
        assert got == [ev.data for message in messages for ev in message]
        assert store.watermark == 11  # (greatest offset in the log) - 1, as before healing
    finally:
        store.close()


def test_unreadable_covers_entries_a_rebuild_dropped(tmp_path: Path) -> None:
    messages, locations = _ingest(tmp_path)
    _flip(tmp_path, locations[("heal-s", 4)])
    rebuild_partition(tmp_path, 0).close()  # the damaged frame leaves no entry at all
    with PartitionLog.open(tmp_path, topic=EVENTS_TOPIC, partition=0) as log:
        store = PartitionStore.open(tmp_path, 0)
        try:
            assert store.location("heal-s", 4) is None
            source = [ev for message in messages for ev in message]
            assert [ev.seq for ev in heal.unreadable(log, store, source)] == [4]
        finally:
            store.close()
        try:
            log.read(locations[("heal-s", 4)])
        except CorruptFrame:
            pass
        else:
            raise AssertionError("the frame should be damaged")


def test_merge() -> None:
    spans = [heal.Span(8, 9), heal.Span(1, 3), heal.Span(4, 6), heal.Span(2, 5)]
    assert heal.merge(spans) == [heal.Span(1, 6), heal.Span(8, 9)]
    assert heal.merge([]) == []
