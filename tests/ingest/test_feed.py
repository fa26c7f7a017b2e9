"""The live feed's own rules, on real partition states (hot log, RocksDB) without a broker:
which offsets it commits for the group, and which partitions it sends back to the catch-up.

Reading from a broker is covered where the feed runs: every worker test (the group's
committed offsets, `tests/ingest/harness.wait_committed`) and
`tests/ingest/test_incarnation.py` (a topic made again under the feed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.ingest.harness import event
from workers.broker.cluster import Incarnation
from workers.ingest.config import IngestConfig
from workers.ingest.feed import LiveFeed
from workers.ingest.partition import PartitionState


class Member:
    """Records what the feed commits for the group (the real one is Faust's consumer)."""

    def __init__(self) -> None:
        self.commits: list[dict[int, int]] = []
        self.refuse = False

    async def commit(self, offsets: Mapping[int, int]) -> bool:
        if self.refuse:
            return False
        self.commits.append(dict(offsets))
        return True

    async def pause_fetching(self, partitions: Iterable[int]) -> None:
        return None


def new_feed(rechecks: list[tuple[int, str]]) -> LiveFeed:
    return LiveFeed(
        "127.0.0.1:1",  # never dialled here
        "kaizen.events",
        IngestConfig(),
        recheck=lambda state, reason: rechecks.append((state.partition, reason)),
        stops_for=lambda exc: False,
    )


def opened(directory: Path, partition: int) -> PartitionState:
    state = PartitionState(partition, directory / str(partition))
    state.open()
    state.next_offset = state.next_kafka_offset
    return state


def test_commits_durable_offsets_only_forward(tmp_path: Path) -> None:
    member = Member()
    feed = new_feed([])
    feed.member = member
    state = opened(tmp_path, 0)

    async def go() -> None:
        feed.add(state)
        await feed.commit_offsets()  # added: its offset goes to the group once, even 0
        for i in range(3):
            state.process(i, event("s", i))
        await feed.commit_offsets()  # processed, not durable: nothing new
        async with state.lock:
            await state.flush()
        await feed.commit_offsets()
        await feed.commit_offsets()  # nothing moved: no request
        member.refuse = True  # the group rebalanced meanwhile: tried again next round
        state.process(3, event("s", 3))
        async with state.lock:
            await state.flush()
        await feed.commit_offsets()
        member.refuse = False
        await feed.commit_offsets()
        feed.remove(0)
        state.process(4, event("s", 4))
        async with state.lock:
            await state.flush()
        await feed.commit_offsets()  # no longer fed: never committed

    asyncio.run(go())
    assert member.commits == [{0: 0}, {0: 3}, {0: 4}]
    state.close()


def test_sends_back_only_partitions_of_another_incarnation(tmp_path: Path) -> None:
    rechecks: list[tuple[int, str]] = []
    feed = new_feed(rechecks)
    states = [opened(tmp_path, p) for p in range(3)]
    now = Incarnation("cluster-a", "topic-1")
    for state in states[:2]:  # partition 2's epoch records no ids (an old epoch file)
        state.confirm_epoch(now)
    for state in states:
        feed.add(state)
    assert feed.check_incarnation(now) == []
    assert feed.check_incarnation(Incarnation("cluster-a", None)) == []  # no topic id: no news
    assert feed.check_incarnation(Incarnation("cluster-b", "topic-1")) == [0, 1]
    assert "cluster id changed" in rechecks[0][1]
    assert not feed.fed(0) and not feed.fed(1)  # not fed until the catch-up hands them back
    assert feed.fed(2)
    feed.add(states[0])
    assert feed.check_incarnation(Incarnation("cluster-a", "topic-2")) == [0]
    assert "topic id changed" in rechecks[-1][1]
    assert [p for p, _ in rechecks] == [0, 1, 0]
    for state in states:
        state.close()
