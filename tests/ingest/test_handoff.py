"""Three workers in one group: one is killed mid-stream, a new one starts with an empty data dir.

At the end every session is complete, with no (session_id, seq) twice, in the
hot log and index of whichever worker owns its partition, the newcomer included
(it caught up from the start of the topic).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import Broker, new_broker
from tests.ingest.harness import (
    end_offsets,
    indexed,
    log_events,
    produce_in_slices,
    session_messages,
    start_worker,
    wait_committed,
)
from workers.ingest.assignment import partition_for_key

# Six partitions: three workers hold two each; when one dies the other two hold three each,
# and Faust's assignor (capacity ceil(6/3) = 2 per member) must then hand two to the newcomer.
# (With four, two each for two members is already within capacity and the newcomer may get
# nothing.)
PARTITIONS = 6


pytestmark = pytest.mark.broker


@pytest.fixture
def broker6(tmp_path: Path) -> Iterator[Broker]:
    broker = new_broker(tmp_path / "broker", PARTITIONS)
    yield broker
    broker.stop()


def test_kill_one_of_three_then_start_an_empty_one(broker6: Broker, tmp_path: Path) -> None:
    rng = random.Random(3)
    bootstrap = broker6.bootstrap
    expected = {f"h-{s}": rng.randrange(50, 400) for s in range(160)}
    ordered = []
    for sid, n in expected.items():
        ordered += session_messages(sid, range(n), [rng.choice([1, 32, 128])])

    thread = produce_in_slices(bootstrap, ordered, 20)
    workers = {
        name: start_worker(bootstrap, tmp_path / name, PARTITIONS, tmp_path / f"{name}.log")
        for name in ("w1", "w2", "w3")
    }
    try:
        time.sleep(7)  # joined and ingesting
        workers.pop("w2").kill()
        thread.join()
        time.sleep(2)
        workers["w4"] = start_worker(bootstrap, tmp_path / "w4", PARTITIONS, tmp_path / "w4.log")
        ends = asyncio.run(end_offsets(bootstrap, PARTITIONS))
        assert sum(ends.values()) == len(ordered)
        deadline = time.monotonic() + 120
        while True:
            owners: dict[int, list[str]] = {}
            for name, w in workers.items():
                for p in w.ready_partitions():
                    owners.setdefault(p, []).append(name)
            settled = len(owners) == PARTITIONS and all(len(v) == 1 for v in owners.values())
            if settled and any(v == ["w4"] for v in owners.values()):
                wait_committed(bootstrap, ends, timeout=60)
                break
            assert time.monotonic() < deadline, f"owners {owners}"
            time.sleep(0.5)
        # no rebalance may have moved anything meanwhile
        again: dict[int, list[str]] = {}
        for name, w in workers.items():
            for p in w.ready_partitions():
                again.setdefault(p, []).append(name)
        assert again == owners
    finally:
        codes = {name: w.stop() for name, w in workers.items()}
    assert all(code == 0 for code in codes.values()), codes
    per_worker = {name: indexed(tmp_path / name, PARTITIONS) for name in ("w1", "w3", "w4")}
    # the hot logs themselves, not only the indexes: each owner's log holds its partitions'
    # events once (a redelivered message appended again would show only here)
    for name in ("w1", "w3", "w4"):
        dupes = [k for k, n in log_events(tmp_path / name, PARTITIONS).items() if n > 1]
        assert not dupes, f"{name}: {len(dupes)} events twice in the hot log, e.g. {dupes[:3]}"
    for sid, n in expected.items():
        p = partition_for_key(sid.encode(), PARTITIONS)
        owner = owners[p][0]
        part, seqs = per_worker[owner][sid]
        assert part == p
        assert seqs == list(range(n)), f"{sid} on {owner}: {len(seqs)} of {n}"
