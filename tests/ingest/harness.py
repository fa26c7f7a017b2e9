"""Helpers of the ingest tests: worker processes, producing, reading what the stores hold."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from tests.procs import stop
from workers.broker.embedded import free_port
from workers.codec import batch
from workers.codec.event import complete_event, decode_event, encode_event
from workers.hotlog import PartitionLog
from workers.ingest import metrics
from workers.settings import EVENTS_TOPIC
from workers.state import PartitionStore

ROOT = Path(__file__).resolve().parents[2]
GROUP = "kaizen-stream"


def event(sid: str, seq: int, **more: object) -> bytes:
    fields = {"session_id": sid, "seq": seq, "ts_ms": 1_760_000_000_000 + seq, "agent": "claude"}
    fields.update(more)
    return encode_event(complete_event(fields))


def session_messages(sid: str, seqs: Iterable[int], sizes: list[int]) -> list[tuple[str, bytes]]:
    """A session's events as messages: batches of the given sizes in turn (1 = plain event)."""
    seqs = list(seqs)
    out = []
    i = k = 0
    while i < len(seqs):
        n = sizes[k % len(sizes)]
        k += 1
        chunk = [event(sid, q) for q in seqs[i : i + n]]
        out.append((sid, chunk[0] if len(chunk) == 1 else batch.join(chunk)))
        i += n
    return out


async def produce(
    bootstrap: str,
    messages: list[tuple[str, bytes]],
    topic: str = EVENTS_TOPIC,
    compression: str | None = None,
) -> dict[int, int]:
    """Produce in order (batches compressed with `compression`, if given); returns
    partition -> number of messages produced there."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=16 << 20,
        linger_ms=5,
        compression_type=compression,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in messages]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return dict(Counter(m.partition for m in metas))


def produce_in_slices(
    bootstrap: str, messages: list[tuple[str, bytes]], slices: int, pause: float = 0.5
) -> threading.Thread:
    """A started thread producing `messages` in order, in `slices` parts `pause` s apart,
    so that a test can crash, kill or start workers while events keep arriving."""

    def feed() -> None:
        step = max(1, len(messages) // slices)
        for i in range(0, len(messages), step):
            asyncio.run(produce(bootstrap, messages[i : i + step]))
            time.sleep(pause)

    thread = threading.Thread(target=feed)
    thread.start()
    return thread


async def read_to_end(
    bootstrap: str, partitions: int, topic: str = EVENTS_TOPIC
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic`, until three polls in a row come back empty (the end: tansu's
    end offsets lie)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=32 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        empty = 0
        while empty < 3:
            got = await consumer.getmany(timeout_ms=300, max_records=100_000)
            if not any(got.values()):
                empty += 1
            for records in got.values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, partitions: int, topic: str = EVENTS_TOPIC) -> dict[int, int]:
    """Exact next offsets of each partition."""
    ends = dict.fromkeys(range(partitions), 0)
    async for record in read_to_end(bootstrap, partitions, topic):
        ends[record.partition] = record.offset + 1
    return ends


async def delete_topic(bootstrap: str, topic: str, timeout: float = 60) -> None:
    """Delete `topic` and return once the broker no longer lists it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        deadline = time.monotonic() + timeout
        while topic in await admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} still listed after {timeout}s"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def committed(bootstrap: str, partitions: int, group: str = GROUP) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in range(partitions)]
        # tansu cannot answer OffsetFetch for "all partitions": name them
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
        return {}  # Apache Kafka, just started: its offsets topic is still being made
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == EVENTS_TOPIC and meta.offset is not None and meta.offset >= 0
    }


def wait_committed(bootstrap: str, ends: dict[int, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = asyncio.run(committed(bootstrap, len(ends)))
        if all(got.get(p, 0) >= end for p, end in ends.items() if end):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"committed {got}, want {ends}")
        time.sleep(0.5)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    def scrape(self) -> str:
        """The worker's /metrics text; empty while it does not answer."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            return str(urllib.request.urlopen(url, timeout=2).read().decode())
        except OSError:
            return ""

    def metrics(self) -> dict[str, int]:
        """Each metric summed over the worker's partitions."""
        return metrics.totals(self.scrape())

    def ready_partitions(self) -> set[int]:
        """The partitions this worker owns and serves (caught up), from its /metrics."""
        ready = metrics.parse(self.scrape()).get("kaizen_partition_ready", {})
        return {p for p, flag in ready.items() if flag == 1}

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log_file.close()

    def stop(self, timeout: float = 60) -> int:
        code = stop(self.proc, timeout)
        self.log_file.close()
        return code

    def stopped(self) -> bool:
        """Is the process stopped (SIGSTOP: state T), at a test point say?"""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] == "T"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_owned(workers: list[Worker], partitions: int, timeout: float = 120) -> None:
    """Until the workers' ready partitions split all `partitions` between them, each with
    some: the group has settled, so no partition moves while a test produces."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [w.ready_partitions() for w in workers]
        everyone = set().union(*owned)
        if all(owned) and everyone == set(range(partitions)) and sum(map(len, owned)) == partitions:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the group did not settle: ready partitions {owned}")
        time.sleep(0.5)


def start_worker(
    bootstrap: str,
    data_dir: Path,
    partitions: int,
    log_path: Path,
    session_timeout: float = 6,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Worker:
    """A worker process; `env` adds to its environment (a test point, say); its web port is
    `port`, a free one unless given."""
    port = port or free_port()
    env = {
        **os.environ,
        "KAIZEN_BROKER": bootstrap,
        "KAIZEN_DATA_DIR": str(data_dir),
        "KAIZEN_PARTITIONS": str(partitions),
        **(env or {}),
    }
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers",
            "worker",
            "--web-port",
            str(port),
            "--session-timeout",
            str(session_timeout),
        ],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    return Worker(proc, port, log_path, log_file)


def ready_owners(workers: dict[str, Worker], partitions: int, timeout: float) -> dict[int, str]:
    """partition -> the one worker whose /metrics says it is ready, once every partition has
    exactly one such owner (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        owners: dict[int, list[str]] = {}
        for name, w in workers.items():
            ready = metrics.parse(w.scrape()).get("kaizen_partition_ready", {})
            for p, flag in ready.items():
                if flag == 1:
                    owners.setdefault(p, []).append(name)
        if len(owners) == partitions and all(len(v) == 1 for v in owners.values()):
            return {p: v[0] for p, v in owners.items()}
        assert time.monotonic() < deadline, f"owners {owners}"
        time.sleep(0.5)


def indexed(data_dir: Path, partitions: int) -> dict[str, tuple[int, list[int]]]:
    """session -> (partition, seqs in index order), read through index and log (worker stopped).

    Every indexed frame is decoded and checked to hold the (session, seq) it is indexed as.
    """
    out: dict[str, tuple[int, list[int]]] = {}
    for p in range(partitions):
        d = data_dir / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        if not (d / "index").is_dir():
            continue
        log = PartitionLog.open(d, topic=EVENTS_TOPIC, partition=p)
        store = PartitionStore.open(d, p)
        try:
            for info in store.sessions():
                seqs = []
                for seq, loc in store.locations(info.session_id):
                    ev = decode_event(log.read(loc))
                    assert (ev["session_id"], ev["seq"]) == (info.session_id, seq)
                    seqs.append(seq)
                assert info.session_id not in out, f"{info.session_id} in two partitions"
                out[info.session_id] = (p, seqs)
        finally:
            store.close()
            log.close()
    return out


def hot_log_events(data_dir: Path, partitions: int) -> Iterator[dict[str, Any]]:
    """Every event in the good frames of the hot logs, partition by partition, each in its
    log's order (worker stopped)."""
    for p in range(partitions):
        d = data_dir / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        if not d.is_dir():
            continue
        with PartitionLog.open(d, topic=EVENTS_TOPIC, partition=p) as log:
            for _loc, payload in log.scan():
                yield decode_event(payload)


def log_events(data_dir: Path, partitions: int) -> Counter[tuple[str, int]]:
    """(session, seq) -> how many good frames of the hot logs hold it (worker stopped).

    The log itself, not the index: a duplicate appended but never indexed shows here only.
    """
    return Counter((ev["session_id"], ev["seq"]) for ev in hot_log_events(data_dir, partitions))


def logged_offsets(data_dir: Path, partitions: int) -> dict[int, int]:
    """partition -> the greatest Kafka offset of the current epoch in its hot log, read
    without opening the log (no recovery, no lock: a killed worker's files as it left them)."""
    from workers.hotlog import frame, segment
    from workers.ingest import epoch

    out: dict[int, int] = {}
    for p in range(partitions):
        d = data_dir / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        if not d.is_dir():
            continue
        base = epoch.load(d).base
        for seg in segment.list_bases(d):
            with segment.Mapped(d / segment.name(seg), copy=True) as m:
                for item in m.frames(seg):
                    if isinstance(item, frame.Good) and item.offset >= base:
                        out[p] = max(out.get(p, -1), item.offset - base)
    return out


async def read_dlq(
    bootstrap: str, partitions: int, topic: str
) -> list[tuple[dict[str, str], bytes]]:
    from workers.ingest.dlq import header_dict

    return [
        (header_dict(r.headers), r.value or b"")
        async for r in read_to_end(bootstrap, partitions, topic)
    ]


def dump(obj: object) -> str:
    return json.dumps(obj, default=str)[:2000]
