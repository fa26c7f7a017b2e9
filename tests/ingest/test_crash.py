"""kill -9 the worker at random points while events stream in: nothing lost or doubled.

Each kill must land on work the group had not committed (the hot log holds messages past
the committed offset: they are redelivered after the restart and must be deduplicated),
and the hot log itself, not only the index, must hold every event once.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.brokers import Broker, broker_kind
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    committed,
    end_offsets,
    indexed,
    log_events,
    logged_offsets,
    produce_in_slices,
    session_messages,
    start_worker,
    wait_committed,
)


def test_kill_dash_nine_while_ingesting(fresh_broker: Broker, tmp_path: Path) -> None:
    rng = random.Random(7)
    bootstrap = fresh_broker.bootstrap
    expected: dict[str, int] = {}
    per_session: list[list[tuple[str, bytes]]] = []
    for s in range(300):
        sid = f"crash-{s}"
        n = rng.randrange(100, 560)
        expected[sid] = n
        # redelivery of some events within the stream (a shipper retry) must dedupe too
        seqs = list(range(n)) + list(range(rng.randrange(0, 20)))
        per_session.append(session_messages(sid, seqs, [rng.choice([1, 16, 64, 128])]))
    # interleave sessions, keeping each session's order
    messages: list[tuple[str, bytes]] = []
    cursors = [0] * len(per_session)
    live = list(range(len(per_session)))
    while live:
        i = rng.choice(live)
        messages.append(per_session[i][cursors[i]])
        cursors[i] += 1
        if cursors[i] == len(per_session[i]):
            live.remove(i)
    total = sum(expected.values())
    assert total > 90_000

    # produce in slices over ~30 s while the worker is killed and restarted
    feeder = produce_in_slices(bootstrap, messages, 60)
    data = tmp_path / "data"
    hits = []  # per kill: partitions whose log held messages past the committed offset
    try:
        for _ in range(4):
            worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w.log")
            # the join takes ~half the session timeout; then ingest runs for a random while
            time.sleep(rng.uniform(4.0, 8.0))
            worker.kill()
            done = asyncio.run(committed(bootstrap, TEST_PARTITIONS))
            logged = logged_offsets(data, TEST_PARTITIONS)
            hits.append({p for p, top in logged.items() if top >= done.get(p, 0)})
    finally:
        feeder.join()
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w.log")
    try:
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        assert sum(ends.values()) == len(messages)
        wait_committed(bootstrap, ends, timeout=120)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]
    if broker_kind() == "tansu":
        # On Apache Kafka the offset commit follows the group commit within milliseconds, so
        # a kill seldom lands between them (4 of 4 missed in runs seen); the loss and
        # duplicate checks below hold either way.
        assert sum(1 for h in hits if h) >= 3, f"kills that hit uncommitted work: {hits}"
    in_log = log_events(data, TEST_PARTITIONS)
    dupes = [k for k, n in in_log.items() if n > 1]
    assert not dupes, f"{len(dupes)} events twice in the hot log, e.g. {dupes[:3]}"
    assert set(in_log) == {(sid, q) for sid, n in expected.items() for q in range(n)}
    got = indexed(data, TEST_PARTITIONS)
    missing = {sid for sid in expected if sid not in got}
    assert not missing, f"{len(missing)} sessions missing"
    for sid, n in expected.items():
        seqs = got[sid][1]
        assert seqs == list(range(n)), f"{sid}: {len(seqs)} of {n}"
