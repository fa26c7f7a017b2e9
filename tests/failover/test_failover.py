"""Failover on a three-broker Apache Kafka cluster: leaders killed and brokers restarted
while hooks ship, workers ingest and replays stream (issue 13, item 2).

The module shares one cluster (`kafka_cluster_module`: three KRaft nodes on
loopback; starting one is the slowest part of a test), and each test leaves every
node running and in sync (`cluster`). The project's topics are created as an
operator creates them, at replication factor 3 with min.insync.replicas=2 and
unclean leader election off; each test starts its own worker processes (data
dirs of their own, sessions of their own), whose first bootstrap host is down
(`worker_bootstrap`). Each test ends with the same checks: every event the
shipper or the producer saw acknowledged replays exactly once, in seq order;
nothing is in the DLQ; the workers started at the beginning are the ones still
running, and each stops cleanly with no crash in its log.

Why a 100-replay burst at the end of the rolling restart: it found the replay
answering `error` (KafkaTimeoutError) when a reply batch waited too long for its
place on a busy partition (`workers.kafka.clients.queue_batch`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.failover.harness import (
    PARTITIONS,
    Feeder,
    Hooks,
    Survivors,
    assert_replays_exactly,
    create_cluster_topics,
    heal,
    leaders,
    start_workers,
    wait_in_sync,
)
from tests.ingest.harness import end_offsets, wait_committed
from workers.broker.apache import KafkaCluster
from workers.ingest.assignment import partition_for_key
from workers.kafka.config import KafkaConnection
from workers.replay.client import ReplayClient, Replayed, ReplayResult
from workers.replay.formats import PACING_ORIGINAL
from workers.settings import EVENTS_TOPIC, REPLAY_TOPIC
from workers.shipper.producer import produce_events


@pytest.fixture
def cluster(kafka_cluster_module: KafkaCluster) -> Iterator[KafkaCluster]:
    """The module's cluster with the project's topics, whole again after each test."""
    create_cluster_topics(kafka_cluster_module)
    yield kafka_cluster_module
    heal(kafka_cluster_module)


def _wait_led_without(cluster: KafkaCluster, topic: str, node_id: int) -> None:
    """Until every partition of `topic` has a leader other than `node_id` (elected)."""
    deadline = time.monotonic() + 120
    while True:
        led = leaders(cluster.bootstrap, topic)
        if all(leader not in (-1, node_id) for leader in led.values()):
            return
        assert time.monotonic() < deadline, f"no new leaders: {led}"
        time.sleep(0.3)


def test_events_leader_killed_while_hooks_ship_and_workers_ingest(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    alive = Survivors(start_workers(cluster, tmp_path, ["w1", "w2"]))
    hooks = Hooks(tmp_path / "spool", cluster.bootstrap, [f"kill-{i}" for i in range(4)])
    try:
        hooks.start().wait_calls(30)
        led = leaders(cluster.bootstrap, EVENTS_TOPIC)
        victim = Counter(led.values()).most_common(1)[0][0]
        cluster.node(victim).kill()
        _wait_led_without(cluster, EVENTS_TOPIC, victim)
        hooks.wait_calls(hooks.calls + 30)  # shipped to the new leaders, one node down
        alive.check()
        cluster.node(victim).start()  # back, and catching up while hooks keep shipping
        hooks.wait_calls(hooks.calls + 30)
        hooks.stop()
        hooks.settle()
        alive.check()
        assert_replays_exactly(cluster.bootstrap, hooks.expected())
        alive.stop_cleanly()
    finally:
        hooks.stop()
        hooks.end_shipper()
        alive.close()


def _paced_events(sid: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "session_id": sid,
            "seq": q,
            "ts_ms": 1_760_000_000_000 + 1000 * q,
            "kind": "message",
            "agent": "claude",
            "payload": "{}",
        }
        for q in range(n)
    ]


async def _replay_through_a_kill(
    cluster: KafkaCluster, sid: str, n: int, kill_after: int
) -> tuple[list[int], ReplayResult, int]:
    """Replay `sid` at 40x its original pace (1 s apart: 25 ms an event); once `kill_after`
    events arrived, kill -9 the leader of the reply partition. (seqs, result, killed node)."""
    victim = -1
    seqs: list[int] = []
    result: ReplayResult | None = None
    async with ReplayClient(cluster.bootstrap, timeout=120) as client:
        request = client.request(sid, pacing=PACING_ORIGINAL, speed=40.0)
        async for item in client.replay(request):
            if isinstance(item, Replayed):
                seqs.append(item.seq)
                if len(seqs) == kill_after:
                    reply_partition = partition_for_key(sid.encode(), PARTITIONS)
                    victim = (await asyncio.to_thread(leaders, cluster.bootstrap, REPLAY_TOPIC))[
                        reply_partition
                    ]
                    await asyncio.to_thread(cluster.node(victim).kill)
            elif isinstance(item, ReplayResult):
                result = item
    assert result is not None
    return seqs, result, victim


def test_broker_killed_during_a_replay(cluster: KafkaCluster, tmp_path: Path) -> None:
    alive = Survivors(start_workers(cluster, tmp_path, ["w1"]))
    try:
        sid, n = "replay-through-kill", 600
        conn = KafkaConnection(tuple(cluster.bootstrap.split(",")))
        assert asyncio.run(produce_events(conn, _paced_events(sid, n))) == n
        wait_committed(
            cluster.bootstrap, asyncio.run(end_offsets(cluster.bootstrap, PARTITIONS)), 180
        )
        seqs, result, victim = asyncio.run(_replay_through_a_kill(cluster, sid, n, n // 4))
        assert victim in {n.node_id for n in cluster.nodes}  # killed before the end marker
        assert result.complete and seqs == list(range(n)), (result, len(seqs))
        alive.check()
        cluster.node(victim).start(wait=False)  # `cluster` waits for it after the test
        assert_replays_exactly(cluster.bootstrap, {sid: n})
        alive.stop_cleanly()
    finally:
        alive.close()


def test_rolling_restart_while_100k_events_flow(cluster: KafkaCluster, tmp_path: Path) -> None:
    """Each node in turn stopped and started again, the next one only once every replica
    is back in sync (as an operator rolls a cluster); 100k events produced in rounds
    released as each node goes down, hooks firing throughout."""
    alive = Survivors(start_workers(cluster, tmp_path, ["w1", "w2"]))
    nodes = len(cluster.nodes)
    feeder = Feeder(cluster.bootstrap, [f"roll-{i}" for i in range(100)], per_round=10, rounds=100)
    hooks = Hooks(tmp_path / "spool", cluster.bootstrap, ["roll-hook-0", "roll-hook-1"])
    try:
        feeder.start().release(0.1)
        hooks.start().wait_calls(5)
        for k, node in enumerate(cluster.nodes):
            node.stop()  # a clean shutdown: Kafka moves its leaderships first
            feeder.release(0.1 + 0.9 * (k + 1) / nodes)  # these flow while it is down
            alive.check()
            node.start()
            wait_in_sync(cluster)
        feeder.join()
        hooks.stop()
        hooks.settle()
        assert feeder.events == 100_000
        alive.check()
        assert_replays_exactly(cluster.bootstrap, {**feeder.acked, **hooks.expected()})
        alive.stop_cleanly()
    finally:
        feeder.abort()
        feeder.join()
        hooks.stop()
        hooks.end_shipper()
        alive.close()
