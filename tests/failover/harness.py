"""Helpers of the failover tests: the cluster's topics and leaders, hooks that keep firing,
a producer that keeps producing, and the checks every failover test ends with.

Everything is real: the three-node Apache Kafka cluster of `KafkaCluster`, the
project's topics created by `workers.broker.topics` at replication factor 3 and
min.insync.replicas=2, worker processes (`tests/ingest/harness.py`), the installed
hook command and the shipper it starts, the project's producer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.errors import KafkaError

from tests.hooks.util import hook_env, run_hook, shipper_pid
from tests.ingest.harness import (
    Worker,
    end_offsets,
    read_dlq,
    start_worker,
    wait_committed,
    wait_owned,
)
from workers.broker.apache import KafkaCluster
from workers.broker.embedded import free_port
from workers.broker.topics import create_topics, new_admin
from workers.hooks.samples import sample_payloads
from workers.hooks.spool import Spool
from workers.kafka.config import KafkaConnection
from workers.replay.client import ReplayClient
from workers.settings import ALL_TOPICS, DLQ_TOPIC, Settings
from workers.shipper.producer import send_events, start_producer

PARTITIONS = 4
REPLICATION = 3
MIN_INSYNC = 2


def create_cluster_topics(cluster: KafkaCluster) -> None:
    """The project's topics as an operator creates them (`kaizen-stream topics create`:
    safe to run again on a cluster that has them)."""
    settings = Settings(
        broker=cluster.bootstrap,
        partitions=PARTITIONS,
        replication_factor=REPLICATION,
        min_insync_replicas=MIN_INSYNC,
    )
    _created, problems = asyncio.run(create_topics(settings))
    assert not problems, problems


async def _describe_once(bootstrap: str, topic: str) -> list[dict[str, object]]:
    admin = new_admin(bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return list(described["partitions"])
    finally:
        await admin.close()


def describe(bootstrap: str, topic: str, timeout: float = 60) -> list[dict[str, object]]:
    """The partitions of `topic` as the cluster reports them; an admin request that meets a
    node just killed (or still starting) is asked again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return asyncio.run(_describe_once(bootstrap, topic))
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> the node id leading it (-1: none)."""
    return {
        int(p["partition"]): int(p["leader"])  # type: ignore[call-overload]
        for p in describe(bootstrap, topic)
    }


def wait_in_sync(cluster: KafkaCluster, topics: Iterable[str] = ALL_TOPICS) -> None:
    """Until every partition of `topics` has all the cluster's nodes in sync (a node that
    came back has caught up): before the next node of a rolling restart goes down."""
    deadline = time.monotonic() + 180
    size = len(cluster.nodes)
    while True:
        short: dict[str, object] = {}
        for topic in topics:
            for p in describe(cluster.bootstrap, topic):
                if len(p["isr"]) < size:  # type: ignore[arg-type]
                    short[f"{topic}-{p['partition']}"] = p["isr"]
        if not short:
            return
        assert time.monotonic() < deadline, f"replicas not back in sync: {short}"
        time.sleep(0.5)


def heal(cluster: KafkaCluster) -> None:
    """Every node running again and every replica in sync (what the next test starts from)."""
    for node in cluster.nodes:
        if not node.running:
            node.start()
    wait_in_sync(cluster)


def worker_bootstrap(cluster: KafkaCluster) -> str:
    """Every node, after a first host where nothing listens: a worker whose first bootstrap
    host is down must still start (Faust and every client get every host)."""
    return f"127.0.0.1:{free_port()},{cluster.bootstrap}"


def start_workers(cluster: KafkaCluster, tmp_path: Path, names: Iterable[str]) -> list[Worker]:
    bootstrap = worker_bootstrap(cluster)
    workers = [
        start_worker(bootstrap, tmp_path / name, PARTITIONS, tmp_path / f"{name}.log")
        for name in names
    ]
    wait_owned(workers, PARTITIONS, timeout=180)
    return workers


@dataclass
class Survivors:
    """The workers' pids at the start: each check asserts the same processes still run."""

    workers: list[Worker]
    pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pids = [w.proc.pid for w in self.workers]

    def check(self) -> None:
        for w, pid in zip(self.workers, self.pids, strict=True):
            assert w.proc.pid == pid and w.proc.poll() is None, (
                f"worker {pid} exited ({w.proc.returncode}): {w.log_text()[-3000:]}"
            )

    def stop_cleanly(self) -> None:
        """Stop every worker; each exits 0 and its log shows no crash."""
        self.check()
        codes = [w.stop() for w in self.workers]
        for w, code in zip(self.workers, codes, strict=True):
            text = w.log_text()
            assert code == 0, f"worker exited {code}: {text[-3000:]}"
            assert "Traceback" not in text and "crashed" not in text.lower(), text[-5000:]

    def close(self) -> None:
        """Stop whatever still runs (after a failed test); a no-op after `stop_cleanly`."""
        for w in self.workers:
            if w.proc.poll() is None:
                w.stop()


class Hooks:
    """The installed hook command fired in turn for `sessions`, from a thread, with the
    shipper it starts on demand; `stop()` ends the firing, `settle()` waits until the
    spool holds nothing unshipped (every event the shipper saw acknowledged)."""

    def __init__(self, spool_dir: Path, bootstrap: str, sessions: list[str]) -> None:
        self.spool_dir = spool_dir
        self.env = hook_env(spool_dir, KAIZEN_BROKER=bootstrap, KAIZEN_HOOK_NO_SHIP="")
        self.sessions = sessions
        self.fired = dict.fromkeys(sessions, 0)
        self.failed: list[str] = []
        self._payloads = sample_payloads("claude")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fire, daemon=True)

    @property
    def calls(self) -> int:
        return sum(self.fired.values())

    def start(self) -> Hooks:
        self._thread.start()
        return self

    def _fire(self) -> None:
        i = 0
        while not self._stop.is_set():
            sid = self.sessions[i % len(self.sessions)]
            payload = dict(self._payloads[self.fired[sid] % len(self._payloads)])
            payload["session_id"] = sid
            result = run_hook("claude", payload, self.env)
            if result.returncode == 0:
                self.fired[sid] += 1
            else:
                self.failed.append(result.stderr.decode(errors="replace"))
            i += 1
            time.sleep(0.02)

    def wait_calls(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.calls < n:
            assert self._thread.is_alive() and time.monotonic() < deadline, self.calls
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop firing (idempotent); every hook call must have exited 0."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        assert not self.failed, self.failed[:3]

    def settle(self, timeout: float = 180) -> None:
        spool = Spool(str(self.spool_dir))
        deadline = time.monotonic() + timeout
        while spool.pending():
            assert time.monotonic() < deadline, (self.spool_dir / "shipper.log").read_text()
            time.sleep(0.3)

    def expected(self) -> dict[str, int]:
        """session -> how many events its hooks spooled (seqs 0..n-1)."""
        return dict(self.fired)

    def end_shipper(self) -> None:
        pid = shipper_pid(self.spool_dir)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


class Feeder:
    """The project's producer (acks=all, idempotent, compressed: workers/kafka/clients.py)
    writing `rounds` rounds of `per_round` events to each of `sessions` in batch messages,
    from a thread, as fast as it can up to the rounds `release`d so far (so that a test
    spreads the events over the moments it chooses). A round whose send fails is sent
    again by a new producer (the worker dedupes); `acked`: per session, the events of
    rounds acknowledged."""

    def __init__(self, bootstrap: str, sessions: list[str], per_round: int, rounds: int) -> None:
        self.bootstrap = bootstrap
        self.sessions = sessions
        self.per_round = per_round
        self.rounds = rounds
        self.acked = dict.fromkeys(sessions, 0)
        self.retries = 0
        self.error: BaseException | None = None
        self._released = 0
        self._aborted = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def events(self) -> int:
        return sum(self.acked.values())

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def release(self, fraction: float) -> None:
        """Allow rounds up to `fraction` of them."""
        self._released = max(self._released, round(self.rounds * fraction))

    def abort(self) -> None:
        self._aborted = True

    def _run(self) -> None:
        try:
            asyncio.run(self._feed())
        except BaseException as exc:
            self.error = exc

    async def _feed(self) -> None:
        conn = KafkaConnection(tuple(self.bootstrap.split(",")))
        producer = await start_producer(conn)
        try:
            for _ in range(self.rounds):
                while not self._aborted and self.events >= self._released * self.per_round * len(
                    self.sessions
                ):
                    await asyncio.sleep(0.1)
                if self._aborted:
                    return
                events = [
                    {
                        "session_id": sid,
                        "seq": self.acked[sid] + k,
                        "ts_ms": 1_760_000_000_000 + self.acked[sid] + k,
                        "kind": "message",
                        "agent": "claude",
                        "payload": "{}",
                    }
                    for sid in self.sessions
                    for k in range(self.per_round)
                ]
                while True:
                    try:
                        await send_events(producer, events)
                        break
                    except Exception:
                        # not acknowledged: a new producer sends the round again, as the
                        # shipper does (the worker dedupes what landed twice)
                        self.retries += 1
                        await producer.stop()
                        await asyncio.sleep(0.5)
                        if self._aborted:
                            return
                        producer = await start_producer(conn)
                for sid in self.sessions:
                    self.acked[sid] += self.per_round
        finally:
            await producer.stop()

    def join(self) -> None:
        """Wait for the feeder to end; raise its error."""
        if self._thread.is_alive():
            self._thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


async def replay_all(bootstrap: str, sessions: Iterable[str]) -> dict[str, list[int]]:
    """Each session's replayed seqs, every reply checked complete (count and checksum)."""
    async with ReplayClient(bootstrap, timeout=120) as client:

        async def one(sid: str) -> list[int]:
            events, result = await client.collect(sid)
            assert result.complete, (sid, result)
            return [e.seq for e in events]

        names = list(sessions)
        got = await asyncio.gather(*(one(sid) for sid in names))
    return dict(zip(names, got, strict=True))


def assert_replays_exactly(bootstrap: str, expected: dict[str, int]) -> None:
    """Every acknowledged event replays exactly once, in seq order; the DLQ is empty.

    First the workers' group commits reach the end of every events partition (all ingested)."""
    wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, PARTITIONS)), timeout=240)
    replayed = asyncio.run(replay_all(bootstrap, expected))
    for sid, n in expected.items():
        assert replayed[sid] == list(range(n)), f"{sid}: {len(replayed[sid])} replayed, want {n}"
    dead = asyncio.run(read_dlq(bootstrap, PARTITIONS, DLQ_TOPIC))
    assert dead == [], dead[:3]
