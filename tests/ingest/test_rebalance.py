"""Rebalances under steady ingest: workers join and leave while a producer keeps producing.

Issue 12, item 10 (suspected): a message of a newly assigned partition that reaches the agent
before the partition's state exists would be dropped without an ack, and the partition's
commits would stall until the next rebalance (and the watermark would pass the message).
Three worker processes join, stall past their session timeout, leave (cleanly and by kill -9)
and come back, while events keep arriving; afterwards the group's committed offsets reach the
end of every partition, every session replays in full with each event once, and the owner of
each partition holds every event of it exactly once, in its hot log and its index.

On Apache Kafka the stalled worker comes back still holding partitions that another member
owned meanwhile; before `CatchUp.rejoin` it ingested on from the group's committed offset
with the offsets between missing from its log (a session replayed 52 of its 118 events).

Faust's assignor is sticky up to ceil(partitions / members), so a rebalance that both takes
partitions from a worker and gives it others is rare (none in the runs seen); that case is
pinned down in tests/ingest/test_assignment.py.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    Worker,
    end_offsets,
    indexed,
    log_events,
    produce,
    produce_in_slices,
    ready_owners,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.ingest import testpoint
from workers.ingest.assignment import partition_for_key
from workers.replay.client import ReplayClient

# Closing a partition that went elsewhere takes a while (as when it waits for a cancelled
# catch-up): Faust resumes fetching meanwhile.
SLOW_CLOSE = {testpoint.ENV: testpoint.CLOSE_SLOWLY}


async def replay_all(bootstrap: str, sessions: list[str]) -> dict[str, list[int]]:
    """Each session's replayed seqs, every reply checked complete (count and checksum)."""
    async with ReplayClient(bootstrap, timeout=90) as client:

        async def one(sid: str) -> list[int]:
            events, result = await client.collect(sid)
            assert result.complete, sid
            return [e.seq for e in events]

        got = await asyncio.gather(*(one(sid) for sid in sessions))
    return dict(zip(sessions, got, strict=True))


def test_rebalance_while_ingesting(fresh_broker: Broker, tmp_path: Path) -> None:
    rng = random.Random(12)
    bootstrap = fresh_broker.bootstrap
    expected = {f"rb-{s}": rng.randrange(50, 300) for s in range(120)}
    per_session = [
        session_messages(sid, range(n), [rng.choice([1, 8, 32])]) for sid, n in expected.items()
    ]
    messages: list[tuple[str, bytes]] = []
    while any(per_session):
        live = [m for m in per_session if m]
        messages.append(rng.choice(live).pop(0))

    def start(name: str) -> Worker:
        log = tmp_path / f"{name}.log"
        return start_worker(bootstrap, tmp_path / name, TEST_PARTITIONS, log, env=SLOW_CLOSE)

    # steady state first: the group has committed offsets when the rebalances begin
    first = len(messages) // 10
    asyncio.run(produce(bootstrap, messages[:first]))
    workers: dict[str, Worker] = {"w1": start("w1")}
    codes: dict[str, int] = {}
    feeder = None
    try:
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
        feeder = produce_in_slices(bootstrap, messages[first:], 60, pause=0.5)  # ~30 s
        time.sleep(3)
        workers["w2"] = start("w2")  # join: w1 gives partitions away
        time.sleep(5)
        workers["w3"] = start("w3")  # join
        time.sleep(5)
        # w2 stalls past its session timeout (a VM paused, say): evicted, its partitions go
        # elsewhere; it comes back claiming them
        workers["w2"].proc.send_signal(signal.SIGSTOP)
        time.sleep(10)
        workers["w2"].proc.send_signal(signal.SIGCONT)
        time.sleep(6)
        codes["w2"] = workers.pop("w2").stop()  # leave cleanly
        time.sleep(3)
        workers.pop("w1").kill()  # leave by kill -9 ...
        workers["w2"] = start("w2")  # ... while w2 comes back with its stale hot log
        time.sleep(6)
        workers["w1"] = start("w1")  # w1 back after its kill
        feeder.join()
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        assert sum(ends.values()) == len(messages)
        wait_committed(bootstrap, ends, timeout=180)
        owners = ready_owners(workers, TEST_PARTITIONS, timeout=120)
        replayed = asyncio.run(replay_all(bootstrap, list(expected)))
    finally:
        if feeder is not None:
            feeder.join()
        codes.update({name: w.stop() for name, w in workers.items()})
    assert all(code == 0 for code in codes.values()), codes

    for sid, n in expected.items():
        assert replayed[sid] == list(range(n)), f"{sid}: replayed {len(replayed[sid])} of {n}"
    per_worker = {name: indexed(tmp_path / name, TEST_PARTITIONS) for name in set(owners.values())}
    in_logs = {name: log_events(tmp_path / name, TEST_PARTITIONS) for name in set(owners.values())}
    for sid, n in expected.items():
        p = partition_for_key(sid.encode(), TEST_PARTITIONS)
        owner = owners[p]
        part, seqs = per_worker[owner].get(sid, (p, []))
        assert part == p
        assert seqs == list(range(n)), f"{sid} on {owner}: {len(seqs)} of {n}"
        assert all(in_logs[owner][(sid, q)] == 1 for q in range(n)), f"{sid} on {owner}"
