"""The rule that tells a new broker incarnation (pure), and the ids it rests on, as a real
broker reports them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.brokers import Broker
from tests.ingest.harness import delete_topic
from workers.broker.cluster import Incarnation, incarnation
from workers.broker.topics import ensure_topics
from workers.ingest import epoch as epochs
from workers.ingest.epoch import Epoch, went_back

SAME = Incarnation("c1", "t1")
RECORDED = Epoch(100, "c1", "t1")


def test_the_same_incarnation_is_not_new() -> None:
    assert went_back(RECORDED, SAME, end=50, next_offset=50, group_forgot=False) is None
    assert went_back(RECORDED, SAME, end=None, next_offset=50, group_forgot=False) is None


def test_expired_group_offsets_are_no_new_incarnation() -> None:
    assert went_back(RECORDED, SAME, end=80, next_offset=50, group_forgot=True) is None


def test_another_cluster_or_topic_id_is_new() -> None:
    for now in (Incarnation("c2", "t1"), Incarnation("c2", None)):
        reason = went_back(RECORDED, now, end=500, next_offset=50, group_forgot=False)
        assert reason is not None and "cluster id" in reason
    reason = went_back(
        RECORDED, Incarnation("c1", "t2"), end=500, next_offset=50, group_forgot=False
    )
    assert reason is not None and "topic id" in reason


def test_an_end_below_the_watermark_is_new() -> None:
    # same ids (a truncated log, or a broker that reports no topic id restarted empty)
    for now in (SAME, Incarnation("c1", None), Incarnation(None, None)):
        reason = went_back(RECORDED, now, end=49, next_offset=50, group_forgot=False)
        assert reason is not None and "went back" in reason


def test_nothing_recorded_falls_back_to_the_old_rule() -> None:
    old = Epoch(100)  # an epoch file from before the ids were kept
    assert went_back(old, SAME, end=80, next_offset=50, group_forgot=False) is None
    assert went_back(old, SAME, end=80, next_offset=50, group_forgot=True) is not None


def test_what_the_broker_does_not_report_is_kept() -> None:
    assert RECORDED.confirmed(Incarnation(None, None)) == RECORDED
    assert Epoch(3).confirmed(SAME) == Epoch(3, "c1", "t1")


def test_the_epoch_file_round_trips_and_reads_old_files(tmp_path: Path) -> None:
    epochs.store(tmp_path, RECORDED)
    assert epochs.load(tmp_path) == RECORDED
    (tmp_path / epochs.FILE_NAME).write_text('{"base": 7, "probe_offset": 0, "probe_crc": 1}')
    assert epochs.load(tmp_path) == Epoch(7)
    assert epochs.load(tmp_path / "none") == Epoch()


def test_a_topic_made_again_has_another_id(fresh_broker: Broker) -> None:
    """Both brokers report topic ids (Metadata v12), and a new one for a topic made again."""
    bootstrap = fresh_broker.bootstrap
    topic = "kaizen.events"
    first = asyncio.run(incarnation(bootstrap, topic))
    assert first.cluster_id and first.topic_id
    assert asyncio.run(incarnation(bootstrap, topic)) == first
    asyncio.run(delete_topic(bootstrap, topic))
    asyncio.run(ensure_topics(bootstrap, 4))
    second = asyncio.run(incarnation(bootstrap, topic))
    assert second.cluster_id == first.cluster_id
    assert second.topic_id and second.topic_id != first.topic_id
    missing = asyncio.run(incarnation(bootstrap, "kaizen.no-such-topic"))
    assert missing == Incarnation(first.cluster_id, None)
