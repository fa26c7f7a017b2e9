"""PartitionStore and IndexBatch against a real RocksDB in a temp dir."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.hotlog import Location
from workers.state import BatchClosed, PartitionStore, SessionInfo, keys
from workers.state.records import decode_info, encode_fields


def loc(seg: int, pos: int, length: int = 10) -> Location:
    return Location(seg, pos, length)


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    s = PartitionStore.open(tmp_path, 2)
    yield s  # type: ignore[misc]
    s.close()


def test_empty_store(store: PartitionStore, tmp_path: Path) -> None:
    assert (tmp_path / "index").is_dir()
    assert store.watermark == -1
    assert store.session("x") is None
    assert list(store.sessions()) == []
    assert list(store.locations("x")) == []
    assert not store.seen("x", 0)
    assert store.stats()["sessions"] == 0 and store.stats()["entries"] == 0
    assert store.max_location is None


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    with PartitionStore.open(tmp_path, 2) as s:
        b = s.begin()
        for q in range(5):
            b.add("sess", q, loc(100, 64 + q * 30), 1_000 + q, "claude", None if q < 2 else "opus")
        b.add("other", 7, loc(100, 500), 50, "codex", None)
        assert len(b) == 6
        b.commit(41)
    with PartitionStore.open(tmp_path, 2) as s:
        assert s.watermark == 41
        info = s.session("sess")
        assert info == SessionInfo(
            "sess", 2, loc(100, 64), loc(100, 184), 5, 4, 1_000, 1_004, "claude", "opus"
        )
        assert [q for q, _ in s.locations("sess")] == [0, 1, 2, 3, 4]
        assert dict(s.locations("sess"))[3] == loc(100, 154)
        assert s.location("other", 7) == loc(100, 500)
        assert s.location("other", 8) is None
        assert sorted(i.session_id for i in s.sessions()) == ["other", "sess"]
        assert s.stats()["sessions"] == 2 and s.stats()["entries"] == 6
        assert s.max_location == loc(100, 500)
        assert s.seen("sess", 4) and not s.seen("sess", 5)


def test_to_json_is_json(store: PartitionStore) -> None:
    b = store.begin()
    b.add("s", 1, loc(0, 64), 5, "cursor", None)
    b.commit(0)
    info = store.session("s")
    assert info is not None
    out = json.loads(json.dumps(info.to_json()))
    assert out["first"] == {"segment": 0, "position": 64, "length": 10}
    assert out["model"] is None and out["partition"] == 2 and out["count"] == 1


def test_seq_order_with_out_of_order_adds(store: PartitionStore) -> None:
    seqs = [*range(-5, 200), 2**62, -(2**63)]
    rnd = random.Random(7)
    rnd.shuffle(seqs)
    half = len(seqs) // 2
    for part, wm in ((seqs[:half], 1), (seqs[half:], 2)):
        b = store.begin()
        for q in part:
            b.add("s", q, loc(0, 1000 + (q % 997) if q >= 0 else 5), 10, "claude", None)
        b.commit(wm)
    got = [q for q, _ in store.locations("s")]
    assert got == sorted(seqs)
    info = store.session("s")
    assert info is not None and info.count == len(seqs) and info.last_seq == 2**62


def test_ranges_are_inclusive(store: PartitionStore) -> None:
    b = store.begin()
    for q in range(0, 20, 2):
        b.add("s", q, loc(0, 100 + q), 1, "claude", None)
    b.commit(0)

    def seqs(lo: int | None, hi: int | None) -> list[int]:
        return [q for q, _ in store.locations("s", lo, hi)]

    assert seqs(4, 10) == [4, 6, 8, 10]
    assert seqs(3, 9) == [4, 6, 8]
    assert seqs(None, 4) == [0, 2, 4]
    assert seqs(15, None) == [16, 18]
    assert seqs(10, 10) == [10]
    assert seqs(11, 11) == []
    assert seqs(10, 4) == []
    assert seqs(-100, 2**63 - 1) == list(range(0, 20, 2))


def test_sessions_do_not_leak_into_each_other(store: PartitionStore) -> None:
    b = store.begin()
    for sid in ("a", "ab", "a\x00", "b", "é"):
        for q in range(3):
            b.add(sid, q, loc(0, 100 + q), 1, "other", None)
    b.commit(0)
    for sid in ("a", "ab", "a\x00", "b", "é"):
        assert [q for q, _ in store.locations(sid)] == [0, 1, 2]
    assert [q for q, _ in store.locations("")] == []


def test_dedupe_seen_and_contains(store: PartitionStore) -> None:
    b = store.begin()
    b.add("s", 5, loc(0, 100), 1, "claude", None)
    assert b.contains("s", 5) and not b.contains("s", 4) and not b.contains("t", 5)
    assert not store.seen("s", 5)  # not durable before commit
    b.commit(10)
    assert store.seen("s", 5)
    assert not store.seen("s", 4)  # below last_seq but never indexed: a point lookup says no
    assert not store.seen("s", 6)
    b2 = store.begin()
    assert not b2.contains("s", 5)
    b2.add("s", 3, loc(0, 200), 1, "claude", None)
    b2.commit(11)
    assert store.seen("s", 3) and not store.seen("s", 4)


def test_is_new_is_the_one_dedupe_decision(store: PartitionStore) -> None:
    durable = store.begin()
    durable.add("s", 1, loc(0, 100), 1, "claude", None)
    durable.commit(0)
    behind = store.begin()
    behind.add("s", 2, loc(0, 130), 1, "claude", None)  # committing, not yet written
    current = store.begin(behind=behind)
    current.add("s", 3, loc(0, 160), 1, "claude", None)
    assert [current.is_new("s", q) for q in (1, 2, 3, 4)] == [False, False, False, True]
    behind.commit(1)
    assert not current.is_new("s", 2)  # now durable: the store answers
    current.abort()


class _Ev(NamedTuple):
    session_id: str
    seq: int
    producer: str = ""


def test_fresh_keeps_the_first_copy_of_new_events_in_order(store: PartitionStore) -> None:
    b = store.begin()
    b.add("s", 1, loc(0, 100), 1, "claude", None)
    events = [_Ev("s", 2), _Ev("s", 1), _Ev("t", 2), _Ev("s", 2), _Ev("s", 0)]
    assert b.fresh(events) == [_Ev("s", 2), _Ev("t", 2), _Ev("s", 0)]
    assert b.fresh([_Ev("s", 1)]) == [] and b.fresh([_Ev("s", 5)]) == [_Ev("s", 5)]
    b.abort()


def test_seen_cache_is_loaded_lazily_after_reopen(tmp_path: Path) -> None:
    with PartitionStore.open(tmp_path, 0) as s:
        b = s.begin()
        b.add("s", 9, loc(0, 100), 1, "claude", None)
        b.commit(0)
    with PartitionStore.open(tmp_path, 0) as s:
        assert s.seen("s", 9) and not s.seen("s", 10) and not s.seen("s", 8)


def test_adding_an_indexed_seq_again_counts_once(store: PartitionStore) -> None:
    b = store.begin()
    b.add("s", 1, loc(0, 100), 1, "claude", None)
    b.add("s", 1, loc(0, 130), 1, "claude", None)  # same batch
    assert len(b) == 1
    b.commit(0)
    b = store.begin()
    b.add("s", 1, loc(0, 160), 2, "claude", None)  # already indexed
    b.add("s", 2, loc(0, 190), 3, "claude", None)
    b.commit(1)
    info = store.session("s")
    assert info is not None and info.count == 2
    assert store.location("s", 1) == loc(0, 160)
    assert store.stats()["entries"] == 2


def test_producers_are_part_of_the_key(store: PartitionStore) -> None:
    """Two spools number one session's events from 0 each: (seq, producer) tells them apart,
    and a resend of one producer's event is still a duplicate (issue 12.2)."""
    b = store.begin()
    for q, producer in [(1, ""), (0, "b"), (0, "a"), (0, ""), (2, "a")]:
        assert b.is_new("s", q, producer)
        b.add("s", q, loc(0, 100 + q * 10 + len(producer)), 1, "claude", None, producer)
    assert b.contains("s", 0, "a") and not b.contains("s", 1, "a")
    assert not b.is_new("s", 0, "b") and b.is_new("s", 0, "c")
    assert b.fresh([_Ev("s", 0, "a"), _Ev("s", 0, "c"), _Ev("s", 0, "c")]) == [_Ev("s", 0, "c")]
    b.commit(3)
    assert store.seen("s", 0, "a") and store.seen("s", 0, "b") and store.seen("s", 0)
    assert not store.seen("s", 1, "a") and not store.seen("s", 0, "c")
    behind = store.begin()
    behind.add("s", 1, loc(1, 0), 1, "claude", None, "b")
    current = store.begin(behind=behind)
    assert not current.is_new("s", 1, "b") and current.is_new("s", 1, "a")
    behind.commit(4)
    current.abort()
    # replay order: by seq, then producer ("" first)
    order = [(q, p) for q, p, _ in store.entries("s")]
    assert order == [(0, ""), (0, "a"), (0, "b"), (1, ""), (1, "b"), (2, "a")]
    assert [(q, p) for q, p, _ in store.entries("s", 1, 1)] == [(1, ""), (1, "b")]
    assert store.location("s", 0, "a") == loc(0, 101) and store.location("s", 0, "z") is None
    info = store.session("s")
    assert info is not None and info.count == 6 and info.last_seq == 2
    assert store.stats()["entries"] == 6
    assert store.remove_segments([1]) == 1
    assert [(q, p) for q, p, _ in store.entries("s")][-2:] == [(1, ""), (2, "a")]


def test_producer_empty_keys_are_the_format_1_keys() -> None:
    """An index written before producers existed is read as it is: its keys are exactly the
    keys of producer "" (so no migration, and FORMAT_VERSION stays 1)."""
    old = b"\x02" + len(b"sess").to_bytes(2, "big") + b"sess" + (7 + 2**63).to_bytes(8, "big")
    assert keys.entry_key("sess", 7) == keys.entry_key("sess", 7, "") == old
    assert keys.split_entry(old, 7) == (7, "") and keys.entry_prefix_of(old) == old[:7]
    assert keys.FORMAT_VERSION == 1


@given(
    st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=12)), min_size=2, max_size=40
    ),
    st.text(max_size=12),
)
def test_entry_keys_sort_by_seq_then_producer(pairs: list[tuple[int, str]], sid: str) -> None:
    prefix = keys.entry_prefix(sid)
    ks = [keys.entry_key(sid, q, p) for q, p in pairs]
    assert all(prefix <= k < keys.entry_prefix_end(prefix) for k in ks)
    assert all(keys.entry_prefix_of(k) == prefix for k in ks)
    got = [keys.split_entry(k, len(prefix)) for k in sorted(set(ks))]
    assert got == [(q, raw.decode()) for q, raw in sorted({(q, p.encode()) for q, p in pairs})]


def test_session_info_merges(store: PartitionStore) -> None:
    b = store.begin()
    b.add("s", 10, loc(1, 500), 2_000, "claude", "sonnet")
    b.commit(0)
    b = store.begin()
    b.add("s", 3, loc(1, 800), 1_000, "claude", None)  # late, lower seq, older ts
    b.add("s", 11, loc(1, 900), 3_000, "claude", None)
    b.commit(1)
    info = store.session("s")
    assert info is not None
    assert (info.first, info.last) == (loc(1, 500), loc(1, 900))  # log order
    assert (info.count, info.last_seq) == (3, 11)
    assert (info.first_ts_ms, info.last_ts_ms) == (1_000, 3_000)
    assert info.model == "sonnet"  # the latest non-null


def test_watermark_never_moves_back_and_empty_commit(store: PartitionStore) -> None:
    store.begin().commit(7)
    assert store.watermark == 7
    store.begin().commit(3)
    assert store.watermark == 7
    assert store.stats()["entries"] == 0


def test_abort_and_closed_batches(store: PartitionStore) -> None:
    b = store.begin()
    b.add("s", 1, loc(0, 100), 1, "claude", None)
    b.abort()
    assert store.session("s") is None and not store.seen("s", 1) and store.watermark == -1
    with pytest.raises(BatchClosed):
        b.commit(0)
    with store.begin() as b2:
        b2.add("s", 1, loc(0, 100), 1, "claude", None)
    assert b2.closed and store.session("s") is None


def test_remove_segments(store: PartitionStore) -> None:
    b = store.begin()
    for q in range(4):  # "old": only in segment 0
        b.add("old", q, loc(0, 100 + q), 1, "claude", None)
    for q in range(6):  # "span": segments 0, 50, 100
        b.add("span", q, loc(q // 2 * 50, 200 + q), q, "codex", None)
    for q in range(2):  # "new": only in segment 100
        b.add("new", q, loc(100, 300 + q), 1, "cursor", None)
    b.commit(99)
    assert store.remove_segments([0, 7]) == 6
    assert store.session("old") is None and list(store.locations("old")) == []
    span = store.session("span")
    assert span is not None
    assert span.count == 4 and span.first == loc(50, 202) and span.last == loc(100, 205)
    assert span.last_seq == 5
    assert [q for q, _ in store.locations("span")] == [2, 3, 4, 5]
    assert store.stats()["sessions"] == 2 and store.stats()["entries"] == 6
    assert not store.seen("old", 0)
    assert store.max_location == loc(100, 301)
    assert store.remove_segments([0]) == 0
    assert store.remove_segments([100]) == 4
    span = store.session("span")
    assert span is not None and span.last == loc(50, 203) and span.last_seq == 5
    assert store.max_location == loc(50, 203)
    assert store.watermark == 99


def test_incarnation_marker(tmp_path: Path) -> None:
    with PartitionStore.open(tmp_path, 0) as s:
        assert s.incarnation is None
        s.begin().commit(50)
        s.set_incarnation("cluster-a")
        assert s.watermark == 50
        s.set_incarnation("cluster-b", watermark=-1)
    with PartitionStore.open(tmp_path, 0) as s:
        assert s.incarnation == "cluster-b" and s.watermark == -1


def test_read_only_open_beside_a_writer(tmp_path: Path) -> None:
    from workers.state import ReadOnlyStore

    with PartitionStore.open(tmp_path, 0) as writer:
        b = writer.begin()
        b.add("s", 1, loc(0, 100), 1, "claude", None)
        b.commit(4)
        with PartitionStore.open_read_only(tmp_path, 0) as reader:
            assert reader.watermark == 4 and reader.location("s", 1) == loc(0, 100)
            with pytest.raises(ReadOnlyStore):
                reader.begin().commit(5)
            with pytest.raises(ReadOnlyStore):
                reader.remove_segments([0])
            with pytest.raises(ReadOnlyStore):
                reader.set_incarnation("x")
    with pytest.raises(FileNotFoundError):  # no index: nothing is created
        PartitionStore.open_read_only(tmp_path / "none", 0)
    assert not (tmp_path / "none").exists()


def test_a_second_open_of_the_same_index_fails(tmp_path: Path) -> None:
    with PartitionStore.open(tmp_path, 0), pytest.raises(Exception):  # noqa: B017
        PartitionStore.open(tmp_path, 0)


# ------------------------------------------------------------------ pure layout


@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=2, max_size=50))
def test_seq_keys_sort_like_seqs(seqs: list[int]) -> None:
    prefix = keys.entry_prefix("s")
    ks = [keys.entry_key("s", q) for q in seqs]
    assert all(k.startswith(prefix) for k in ks)
    assert [keys.unpack_seq(k[len(prefix) :]) for k in sorted(ks)] == sorted(seqs)


@given(st.text(max_size=30), st.text(max_size=30), st.integers(0, 2**40))
def test_session_prefixes_never_nest(a: str, b: str, q: int) -> None:
    if a != b:
        assert not keys.entry_key(b, q).startswith(keys.entry_prefix(a))
    k = keys.entry_key(a, q)
    assert keys.entry_prefix(a) <= k < keys.entry_prefix_end(keys.entry_prefix(a))


@given(
    st.text(max_size=20),
    st.integers(0, 2**31),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=10),
    st.none() | st.text(max_size=10),
)
def test_session_info_encoding_round_trips(
    sid: str, count: int, seq: int, agent: str, model: str | None
) -> None:
    info = SessionInfo(sid, 3, loc(1, 2, 3), loc(4, 5, 6), count, seq, -1, 2**40, agent, model)
    raw = encode_fields(info.first.pack(), info.last.pack(), count, seq, -1, 2**40, agent, model)
    assert decode_info(sid, 3, raw) == info
