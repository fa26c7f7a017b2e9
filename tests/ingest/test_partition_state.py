"""PartitionState without a broker: the exactly-once order, dedupe, skips, epochs, reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import NamedTuple

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.ingest.harness import event
from workers.broker.cluster import Incarnation
from workers.cli import main as cli_main
from workers.codec import batch
from workers.codec.event import decode_event
from workers.ingest import epoch as epochs
from workers.ingest import metrics
from workers.ingest.assignment import PartitionManager, partition_for_key
from workers.ingest.partition import PartitionState, take
from workers.settings import Settings


class Record(NamedTuple):
    """A Kafka record as `take` reads it."""

    offset: int
    value: bytes
    key: bytes | None = b"k"


def opened(directory: Path) -> PartitionState:
    state = PartitionState(0, directory)
    state.open()
    return state


def feed(state: PartitionState, messages: list[bytes], first_offset: int = 0) -> int:
    """Process `messages` and commit them; the next offset the group may then commit."""

    async def go() -> None:
        before = state.next_kafka_offset
        for i, value in enumerate(messages):
            state.process(first_offset + i, value, b"k")
        assert state.next_kafka_offset == before  # nothing committable before the group commit
        await state.flush()

    asyncio.run(go())
    return state.next_kafka_offset


def seqs(state: PartitionState, sid: str) -> list[int]:
    out = []
    for seq, data in state.read_session(sid):
        assert decode_event(data)["seq"] == seq
        out.append(seq)
    return out


def test_ingest_dedupe_and_read(tmp_path: Path) -> None:
    state = opened(tmp_path)
    msgs = [
        batch.join([event("a", 0), event("a", 1), event("a", 1)]),  # a duplicate inside
        event("b", 0),
        batch.join([event("a", 1), event("a", 2)]),  # a duplicate across messages
        b"garbage-garbage",
    ]
    assert feed(state, msgs) == 4
    assert seqs(state, "a") == [0, 1, 2]
    assert seqs(state, "b") == [0]
    c = state.counters
    assert (c.ingested, c.duplicates, c.dead_lettered, c.messages) == (4, 2, 1, 4)
    assert state.store.watermark == 3
    assert [q for q, _ in state.read_session("a", 1, 1)] == [1]
    state.close()


def test_redelivery_at_or_below_the_watermark_is_skipped_and_committed(tmp_path: Path) -> None:
    state = opened(tmp_path)
    feed(state, [event("a", 0), event("a", 1)])
    state.close()
    state = opened(tmp_path)
    assert state.counters.ingested == 2  # counters persist beside the partition
    assert feed(state, [event("a", 0), event("a", 1), event("a", 2)]) == 3
    assert state.counters.skipped_messages == 2
    assert seqs(state, "a") == [0, 1, 2]
    state.close()


def test_new_epoch_takes_offsets_from_zero_again(tmp_path: Path) -> None:
    state = opened(tmp_path)
    feed(state, [event("a", q) for q in range(5)])
    assert state.store.watermark == 4
    state.new_epoch("test", Incarnation("cluster-2", "topic-2"))
    assert state.epoch.base == 5
    assert state.next_kafka_offset == 0
    # the new broker's offsets 0..: old events again (deduped) and new ones (kept)
    feed(state, [event("a", 3), event("a", 4), event("a", 5), event("b", 0)])
    assert seqs(state, "a") == [0, 1, 2, 3, 4, 5]
    assert seqs(state, "b") == [0]
    state.close()
    state = opened(tmp_path)
    assert state.epoch == epochs.Epoch(5, "cluster-2", "topic-2")
    state.close()


def test_index_lost_after_the_log_fsync_is_rebuilt(tmp_path: Path) -> None:
    state = opened(tmp_path)
    feed(state, [event("a", 0)])
    # appended and fsynced, but the index batch never committed (a crash in between)
    state.process(1, batch.join([event("a", 1), event("a", 2)]))
    state.log.flush()
    state._batch = None
    state.store.close()
    state.log.close()
    if state.summaries is not None:
        state.summaries.close()
    state = opened(tmp_path)
    assert seqs(state, "a") == [0, 1, 2]
    # message 1 is consumed again (it may have lost events to a torn tail); dedupe drops it
    assert state.store.watermark == 0
    feed(state, [batch.join([event("a", 1), event("a", 2)])], first_offset=1)
    assert state.counters.duplicates == 2
    assert seqs(state, "a") == [0, 1, 2]
    state.close()


def test_partitioner_is_the_producers() -> None:
    partitioner = DefaultPartitioner()
    for i in range(200):
        key = f"session-{i}".encode()
        assert partition_for_key(key, 8) == partitioner(key, list(range(8)), list(range(8)))


def test_wait_ready_times_out_for_a_partition_not_owned(tmp_path: Path) -> None:
    manager = PartitionManager(Settings(data_dir=tmp_path))
    with pytest.raises(TimeoutError):
        asyncio.run(manager.wait_ready(3, timeout=0.2))
    assert manager.owned() == [] and manager.get(3) is None


def test_metrics_text() -> None:
    text = metrics.render([(1, metrics.Counters(ingested=5, lag=2), True)])
    assert 'kaizen_ingest_ingested_total{partition="1"} 5' in text
    assert 'kaizen_ingest_lag{partition="1"} 2' in text
    assert 'kaizen_partition_ready{partition="1"} 1' in text
    assert "# TYPE kaizen_ingest_lag gauge" in text


def test_metrics_text_reads_back() -> None:
    text = metrics.render(
        [(0, metrics.Counters(ingested=5), True), (3, metrics.Counters(ingested=7), False)]
    )
    assert metrics.parse(text)["kaizen_ingest_ingested_total"] == {0: 5, 3: 7}
    assert metrics.parse(text)["kaizen_partition_ready"] == {0: 1, 3: 0}
    assert metrics.totals(text)["kaizen_ingest_ingested_total"] == 12


def test_sessions_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = PartitionState(0, tmp_path / "hotlog" / "kaizen.events-0")
    state.open()
    feed(state, [batch.join([event("sess-x", q, model="m1") for q in range(3)])])
    state.close()
    assert cli_main(["sessions", "--data-dir", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"session_id": "sess-x"' in out and '"count": 3' in out
    assert cli_main(["sessions", "--data-dir", str(tmp_path)]) == 0
    assert "sess-x" in capsys.readouterr().out
    assert cli_main(["sessions", "--data-dir", str(tmp_path), "--stats", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"ingested": 3' in out and '"entries": 3' in out
    assert cli_main(["sessions", "--data-dir", str(tmp_path / "nothing")]) == 2


def test_sessions_command_opens_the_index_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "hotlog" / "kaizen.events-0"
    state = PartitionState(0, directory)
    state.open()
    feed(state, [event("sess-ro", 0)])
    state.close()

    def rocksdb_files() -> dict[str, tuple[int, int]]:
        # rocksdict rewrites its own config file on every open; RocksDB's files are the point
        return {
            p.name: (p.stat().st_size, p.stat().st_mtime_ns)
            for p in (directory / "index").iterdir()
            if p.name != "rocksdict-config.json"
        }

    before = rocksdb_files()
    assert cli_main(["sessions", "--data-dir", str(tmp_path), "--json"]) == 0
    assert '"session_id": "sess-ro"' in capsys.readouterr().out
    assert rocksdb_files() == before  # a writable open rolls the WAL and the MANIFEST
    worker = opened(directory)  # and with a worker holding the index, it still reads
    assert cli_main(["sessions", "--data-dir", str(tmp_path), "--json"]) == 0
    assert '"session_id": "sess-ro"' in capsys.readouterr().out
    worker.close()


def test_close_wakes_waiters_and_releases_the_files(tmp_path: Path) -> None:
    async def go() -> None:
        state = PartitionState(0, tmp_path)
        waiter = asyncio.ensure_future(state.ready.wait())
        await asyncio.sleep(0)
        state.close()  # revoked before it was even opened
        await asyncio.wait_for(waiter, 1)
        state.open()  # the open that was under way in a thread finishes: it lets go itself
        again = opened(tmp_path)  # so the directory can be opened again (no LogLocked)
        again.close()

    asyncio.run(go())


def _retained(state: PartitionState) -> None:
    """Run the partition's retention (a coroutine since it commits what is pending first)."""

    asyncio.run(state.enforce_retention())


def test_retention_drops_index_entries_with_their_segments(tmp_path: Path) -> None:
    from workers.hotlog import RetentionPolicy
    from workers.ingest.config import IngestConfig

    config = IngestConfig(segment_bytes=4096, retention=RetentionPolicy(max_bytes=6000))
    state = PartitionState(0, tmp_path, config=config)
    state.open()
    # one message per offset, so segments roll between messages
    feed(state, [batch.join([event("s", i * 4 + j) for j in range(4)]) for i in range(60)])
    before = [info.base for info in state.log.segments()]
    assert len(before) > 2
    indexed = dict(state.store.locations("s"))
    assert sorted(indexed) == list(range(240))
    _retained(state)
    kept = {info.base for info in state.log.segments()}
    assert kept and kept < set(before) and max(before) in kept  # the active one stays
    # exactly the entries of the kept segments remain, computed from before the retention
    expected = {seq: loc for seq, loc in indexed.items() if loc.segment in kept}
    assert expected and len(expected) < len(indexed)
    assert dict(state.store.locations("s")) == expected
    for seq, loc in expected.items():
        assert decode_event(state.log.read(loc))["seq"] == seq
    assert seqs(state, "s") == sorted(expected)
    info = state.store.session("s")
    assert info is not None and info.count == len(expected)
    assert info.first == min(expected.values()) and info.last == max(expected.values())
    state.close()


def test_retention_never_deletes_what_uncommitted_entries_point_into(tmp_path: Path) -> None:
    from workers.hotlog import RetentionPolicy
    from workers.ingest.config import IngestConfig

    config = IngestConfig(segment_bytes=4096, retention=RetentionPolicy(max_bytes=6000))
    state = PartitionState(0, tmp_path, config=config)
    state.open()

    async def go() -> None:
        for i in range(60):  # appended (rolling segments), none committed to the index yet
            state.process(i, batch.join([event("s", i * 4 + j) for j in range(4)]), b"k")
        await state.flush(wait=False)  # a group commit in flight
        for i in range(60, 70):
            state.process(i, event("s", 240 + i), b"k")
        await state.enforce_retention()
        await state.flush()

    asyncio.run(go())
    assert state.next_kafka_offset == 70
    kept = {info.base for info in state.log.segments()}
    remaining = list(state.store.locations("s"))
    assert remaining
    for seq, loc in remaining:  # nothing indexed points into a deleted segment
        assert loc.segment in kept, f"seq {seq} indexed into deleted segment {loc.segment}"
        assert decode_event(state.log.read(loc))["seq"] == seq
    state.close()


def test_group_commit_is_due_by_the_one_commit_policy(tmp_path: Path) -> None:
    from workers.hotlog import CommitPolicy
    from workers.ingest.config import IngestConfig

    policy = CommitPolicy(max_bytes=1 << 30, max_records=5, max_ms=1e9, max_messages=3)
    state = PartitionState(0, tmp_path, config=IngestConfig(commit=policy))
    state.open()
    assert state.log.commit is policy  # the log and the group commit share it
    assert not state.want_flush()
    state.process(0, event("s", 0))
    state.process(1, b"garbage-garbage")  # dead-lettered, still a message awaiting its ack
    assert not state.want_flush()
    state.process(2, event("s", 1))
    assert state.want_flush()  # max_messages
    asyncio.run(state.flush())
    state.process(3, batch.join([event("s", q) for q in range(2, 7)]))
    assert state.want_flush()  # max_records: events
    asyncio.run(state.flush())
    assert not state.want_flush()
    state.close()


def test_ingested_counts_only_events_fsynced_and_indexed(tmp_path: Path) -> None:
    """bench_ingest stops its clock when ``kaizen_ingest_ingested_total`` reaches the total:
    the counter must not run ahead of the last fsync and index commit."""
    state = opened(tmp_path)

    async def go() -> None:
        state.process(0, batch.join([event("a", 0), event("a", 1)]), b"k")
        state.process(1, event("a", 2), b"k")
        assert (state.counters.ingested, state.counters.bytes) == (0, 0)  # appended only
        await state.flush(wait=False)
        assert state.counters.ingested == 0  # the commit is still in flight
        await state.flush()
        assert state.counters.ingested == 3 and state.counters.bytes > 0
        assert seqs(state, "a") == [0, 1, 2]

    asyncio.run(go())
    state.close()


def test_redelivered_messages_send_their_dead_letters_again_below_the_mark(
    tmp_path: Path,
) -> None:
    """After a restart, at or below the watermark nothing is appended again; below
    ``resend_letters_below`` (set by the catch-up) the dead letters go out again, only there."""
    poison = b"\x00\x01 not an event"
    state = opened(tmp_path)
    feed(state, [event("rs", 0), poison, event("rs", 1), poison])
    state.close()
    state = opened(tmp_path)  # restarted: offsets 0..3 are redelivered
    assert state.store.watermark == 3
    frames = sum(1 for _ in state.log.scan())

    state.resend_letters_below = 3
    assert state.process(0, event("rs", 0)) == []
    again = state.process(1, poison)
    assert [dict(h)["offset"] for _, _, h in again] == [b"1"]
    assert state.process(2, event("rs", 1)) == []
    assert state.process(3, poison) == []  # at the mark: its dead letter was delivered
    assert sum(1 for _ in state.log.scan()) == frames  # nothing appended again
    state.close()


def test_a_failed_group_commit_lets_no_later_one_cover_its_offsets(tmp_path: Path) -> None:
    """A dead letter refused (a missing ACL): its group commit fails, and so must every later
    one, or its watermark would cover the message whose dead letter never went out (and
    the events of the aborted index batch), and the offset past it would reach the group."""
    state = opened(tmp_path)
    poison = b"\x00\x01 not an event"

    class Refused(Exception):
        pass

    async def refused() -> None:
        raise Refused("not authorized to write topic kaizen.events.dlq")

    async def go() -> None:
        state.process(0, event("f", 0))
        await state.flush()
        for letter in state.process(1, poison):
            state.add_dlq(asyncio.ensure_future(refused()))
            assert letter.headers
        state.process(2, event("f", 1))
        with pytest.raises(Refused):
            await state.flush()
        state.process(3, event("f", 2))
        with pytest.raises(Refused):  # the next commit would cover offsets 1..3
            await state.flush()

    asyncio.run(go())
    assert state.store.watermark == 0
    assert state.next_kafka_offset == 1  # the group may commit up to the poison, not past it
    state.close()


def test_a_dead_letter_the_producer_refuses_at_once_fails_the_partition(tmp_path: Path) -> None:
    """The producer refuses the dead letter as it is handed over (no metadata for a topic the
    worker may not write): the message is processed but its dead letter never went out, so
    no later group commit may cover it either."""
    state = opened(tmp_path)

    class Refused(Exception):
        pass

    async def refuse(letter: object) -> asyncio.Future[None]:
        raise Refused("not authorized to write topic kaizen.events.dlq")

    async def go() -> None:
        await take(state, Record(0, event("g", 0)), refuse)
        with pytest.raises(Refused):
            await take(state, Record(1, b"\x00\x01 not an event"), refuse)
        await take(state, Record(2, event("g", 1)), refuse)
        with pytest.raises(Refused):
            await state.flush()

    asyncio.run(go())
    assert state.next_kafka_offset == 0  # nothing committable past the refused dead letter
    state.close()
