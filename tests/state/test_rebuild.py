"""Rebuilding the index from a real hot log, and checking that the two agree."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from workers.codec.event import complete_event, encode_event
from workers.hotlog import Location, PartitionLog
from workers.state import PartitionStore
from workers.state.rebuild import REBUILD_DIR, catch_up, index_matches_log, rebuild_partition

TOPIC = "kaizen.events"
Messages = list[tuple[int, list[tuple[str, int]]]]


def event(sid: str, seq: int, *, ts: int | None = None, model: str | None = None) -> bytes:
    return encode_event(
        complete_event(
            {
                "session_id": sid,
                "seq": seq,
                "ts_ms": 1_000 + seq if ts is None else ts,
                "agent": "claude",
                "model": model,
                "payload": "{}",
            }
        )
    )


def open_log(directory: Path, **kw: int) -> PartitionLog:
    return PartitionLog.open(directory, topic=TOPIC, partition=0, **kw)  # type: ignore[arg-type]


def append(
    log: PartitionLog, store: PartitionStore | None, messages: Messages
) -> dict[tuple[str, int], Location]:
    """Append messages (offset, [(sid, seq)...]) and fsync; index them like the ingest does."""
    where: dict[tuple[str, int], Location] = {}
    batch = store.begin() if store is not None else None
    for offset, evs in messages:
        locs = log.append_batch([event(s, q) for s, q in evs], offset)
        for (s, q), loc in zip(evs, locs, strict=True):
            where[(s, q)] = loc
            if batch is not None and not (batch.contains(s, q) or store.seen(s, q)):  # type: ignore[union-attr]
                batch.add(s, q, loc, 1_000 + q, "claude", None)
    log.flush()
    if batch is not None:
        batch.commit(messages[-1][0])
    return where


def messages(first_offset: int, n: int) -> Messages:
    """n messages at offsets from first_offset; message k carries 3 events of session s{k%4}."""
    out = []
    for k in range(first_offset, first_offset + n):
        sid = f"s{k % 4}"
        base = (k // 4) * 3
        out.append((k, [(sid, base), (sid, base + 1), (sid, base + 2)]))
    return out


def index_of(store: PartitionStore) -> dict[tuple[str, int], Location]:
    return {
        (info.session_id, q): loc
        for info in store.sessions()
        for q, loc in store.locations(info.session_id)
    }


def test_rebuild_reproduces_the_live_index(tmp_path: Path) -> None:
    with open_log(tmp_path, segment_bytes=4096) as log:
        store = PartitionStore.open(tmp_path, 0)
        where = append(log, store, messages(10, 200))
        assert len(log.segments()) > 3
        live = index_of(store)
        live_sessions = {i.session_id: i for i in store.sessions()}
        store.close()
        rebuilt = rebuild_partition(tmp_path, 0, log)
        try:
            assert index_of(rebuilt) == live == where
            assert {i.session_id: i for i in rebuilt.sessions()} == live_sessions
            assert rebuilt.watermark == 209 - 1  # the last message is re-consumed
            assert rebuilt.stats()["entries"] == 600
            assert index_matches_log(rebuilt, log)
        finally:
            rebuilt.close()
    assert not (tmp_path / REBUILD_DIR).exists()


def test_rebuild_opens_the_log_itself_and_handles_an_empty_log(tmp_path: Path) -> None:
    store = rebuild_partition(tmp_path, 0)
    try:
        assert store.watermark == -1 and store.stats()["entries"] == 0
    finally:
        store.close()
    with open_log(tmp_path) as log:
        append(log, None, messages(0, 8))
    store = rebuild_partition(tmp_path, 0)
    try:
        assert store.stats()["entries"] == 24 and store.watermark == 6
    finally:
        store.close()


def test_rebuild_keeps_the_first_copy_of_a_redelivered_event(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        first = append(log, None, [(0, [("s", 0), ("s", 1)])])
        append(log, None, [(1, [("s", 1), ("s", 2)])])  # a redelivery appended again
        store = rebuild_partition(tmp_path, 0, log)
        try:
            assert [q for q, _ in store.locations("s")] == [0, 1, 2]
            assert store.location("s", 1) == first[("s", 1)]
            info = store.session("s")
            assert info is not None and info.count == 3 and info.last_seq == 2
            assert store.watermark == 0
        finally:
            store.close()


def test_empty_index_with_a_non_empty_log_disagrees(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        with PartitionStore.open(tmp_path, 0) as store:
            assert index_matches_log(store, log)  # both empty
        append(log, None, messages(0, 4))
        with PartitionStore.open(tmp_path, 0) as store:
            assert not index_matches_log(store, log)
        rebuild_partition(tmp_path, 0, log).close()
        with PartitionStore.open(tmp_path, 0) as store:
            assert index_matches_log(store, log)


def test_index_pointing_past_the_log_disagrees_and_is_rebuilt(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        store = PartitionStore.open(tmp_path, 0)
        append(log, store, messages(0, 20))
        store.close()
        seg = log.segments()[-1].path
    # Lose the tail of the log (as if the index had been committed before the fsync).
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 100)
    with open_log(tmp_path) as log:
        with PartitionStore.open(tmp_path, 0) as store:
            assert not index_matches_log(store, log)
        store = rebuild_partition(tmp_path, 0, log)
        try:
            assert index_matches_log(store, log)
            assert store.stats()["entries"] < 60
            for info in store.sessions():
                for _, loc in store.locations(info.session_id):
                    log.read(loc)
        finally:
            store.close()


def test_bit_flip_under_a_session_last_disagrees(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        store = PartitionStore.open(tmp_path, 0)
        append(log, store, messages(0, 20))
        info = store.session("s1")
        assert info is not None
        seg = log.segments()[-1].path
        store.close()
    with open(seg, "r+b") as f:
        f.seek(info.last.position + 8)
        b = f.read(1)
        f.seek(info.last.position + 8)
        f.write(bytes([b[0] ^ 0xFF]))
    with open_log(tmp_path) as log, PartitionStore.open(tmp_path, 0) as store:
        assert not index_matches_log(store, log)


def test_catch_up_indexes_frames_the_index_missed(tmp_path: Path) -> None:
    with open_log(tmp_path, segment_bytes=4096) as log:
        store = PartitionStore.open(tmp_path, 0)
        try:
            where = append(log, store, messages(0, 30))
            # The process "died" between the log's fsync and the index commit:
            where |= append(log, None, messages(30, 30))
            assert index_matches_log(store, log)  # lagging is not disagreeing
            assert store.watermark == 29
            assert catch_up(store, log) == 90
            assert index_of(store) == where
            assert store.watermark == 58
            assert catch_up(store, log) == 0
        finally:
            store.close()


def test_retention_then_remove_segments(tmp_path: Path) -> None:
    with open_log(tmp_path, segment_bytes=4096) as log:
        store = PartitionStore.open(tmp_path, 0)
        try:
            append(log, store, messages(0, 100))
            bases = [s.base for s in log.segments()[:2]]
            removed = store.remove_segments(bases)
            assert removed > 0
            assert store.stats()["entries"] == 300 - removed
            assert all(loc.segment not in bases for loc in index_of(store).values())
            for info in store.sessions():
                assert info.first.segment not in bases
                assert info.count == len(list(store.locations(info.session_id)))
        finally:
            store.close()


def test_a_crashed_rebuild_leftover_is_ignored(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        append(log, None, messages(0, 4))
        (tmp_path / REBUILD_DIR).mkdir()
        (tmp_path / REBUILD_DIR / "junk").write_text("x")
        store = rebuild_partition(tmp_path, 0, log)
        try:
            assert store.stats()["entries"] == 12
        finally:
            store.close()


def test_rebuild_skips_a_frame_it_cannot_index(tmp_path: Path, caplog: Any) -> None:
    """Issue 12.1: a frame whose session id is too long for an index key (appended by a
    version that did not bound it) is reported and skipped; the frames around it are indexed."""
    long_sid = "L" * 70_000
    with open_log(tmp_path) as log:
        log.append_batch([event("a", 0)], 0)
        bad = log.append_batch([event(long_sid, 0)], 1)[0]
        log.append_batch([event("a", 1), event("b", 0)], 2)
        log.flush()
        with caplog.at_level(logging.WARNING, logger="workers.state.rebuild"):
            rebuilt = rebuild_partition(tmp_path, 0, log)
        try:
            assert set(index_of(rebuilt)) == {("a", 0), ("a", 1), ("b", 0)}
            assert rebuilt.watermark == 1  # the greatest offset in the log, minus one
            assert index_matches_log(rebuilt, log)
        finally:
            rebuilt.close()
    assert f"frame at {bad} not indexed: key_too_long" in caplog.text
    assert "1 frames could not be indexed" in caplog.text
