"""The shipper loop: seal the spool, send sealed frames, commit after the acks.

Invariants (see workers/hooks/spool.py for the files):
- One shipper per spool: the caller holds shipper.lock (flock) while `run` runs.
- The commit pointer moves only after Kafka acknowledged every event before
  it; segments wholly before it are deleted. A crash between ack and commit
  resends one round, which the worker's (session_id, producer, seq) dedupe absorbs.
- On the embedded broker (tansu) an ack is checked before it is trusted: each
  partition written to must end past the lowest offset acked there. tansu
  keeps memory only and acks a produce for a topic that does not exist yet;
  when a producer outlives a broker restart, that record vanishes once the
  topic is created. Apache Kafka's acks are trusted (it always passes the
  check, which costs a metadata request and a ListOffsets per round and a
  consumer per shipper: load on the brokers from every machine of a fleet);
  the broker's cluster id, asked when the producer starts, says which it is,
  and an unknown one keeps the check.
- A frame that can never be sent (not JSON, not an Event, a value Avro cannot
  hold, larger than a message may be) must not stop the others: it is
  appended to `quarantine.jsonl` in the spool dir with its reason and fsynced
  before the commit pointer passes it. Only a broker that does not answer
  makes a round fail and retry. A crash between the two quarantines it again.
- With the broker down nothing is lost: the spool grows (bounded by
  KAIZEN_SPOOL_MAX_BYTES in the hook), a warning is logged when it passes half
  the bound, and sending resumes with backoff once the broker answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from workers.broker.cluster import acks_prove_landing, cluster_id
from workers.codec.event import complete_event, encode_event
from workers.durable import fsync_dir
from workers.errors import KaizenError
from workers.hooks.spool import HEAD_SIZE, Frame, Spool, max_bytes
from workers.kafka import clients
from workers.kafka.errors import explain
from workers.settings import EVENTS_TOPIC
from workers.shipper.capture import capture_pending
from workers.shipper.producer import MAX_MESSAGE_BYTES, Delivery, deliver, start_producer

LANDED_TIMEOUT_S = 10.0
QUARANTINE = "quarantine.jsonl"
BATCH_OVERHEAD = 12  # a batch of one: its header (8 bytes) and the item's length (4)


class NotLanded(KaizenError, RuntimeError):
    """The broker acked records that its topic does not hold; they are sent again."""


class Shipper:
    def __init__(
        self,
        spool: Spool,
        bootstrap: clients.Target,
        *,
        topic: str = EVENTS_TOPIC,
        max_batch: int = 128,
        poll: float = 0.2,
        quiet: bool = False,
    ) -> None:
        self.spool = spool
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_batch = max_batch
        self.poll = poll
        self.quiet = quiet
        self.shipped = 0
        self.gave_up = False
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._check_acks = True  # until the broker that started the producer says otherwise
        self._warned_size = 0.0

    @property
    def checks_acks(self) -> bool:
        """Whether each round's acks are checked against end offsets (the embedded broker)."""
        return self._check_acks

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"{time.strftime('%H:%M:%S')} ship: {message}", file=sys.stderr, flush=True)

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        consumer, self._consumer = self._consumer, None
        for client in (producer, consumer):
            if client is not None:
                with contextlib.suppress(Exception):  # a broken connection may fail to close
                    await asyncio.wait_for(client.stop(), 5)

    async def _check_landed(self, delivery: Delivery) -> None:
        """NotLanded unless every partition written to ends past its lowest acked offset."""
        if not delivery.first_offsets:
            return
        if self._consumer is None:
            consumer = clients.new_consumer(
                self.bootstrap, role="shipper", enable_auto_commit=False
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        # tansu also answers offsets from that phantom storage: the topic must exist first.
        # An all-topics metadata request (private client API) never auto-creates one.
        cluster = await asyncio.wait_for(
            self._consumer._client.fetch_all_metadata(), LANDED_TIMEOUT_S
        )
        known = cluster.partitions_for_topic(self.topic) or set()
        if not set(delivery.first_offsets) <= known:
            raise NotLanded(f"{self.topic} is not on the broker yet (a restarted broker?)")
        tps = [TopicPartition(self.topic, p) for p in delivery.first_offsets]
        ends = await asyncio.wait_for(self._consumer.end_offsets(tps), LANDED_TIMEOUT_S)
        missing = [tp.partition for tp in tps if ends[tp] <= delivery.first_offsets[tp.partition]]
        if missing:
            raise NotLanded(
                f"{self.topic} partitions {missing} do not hold the records just acked "
                "(a restarted broker?)"
            )

    def _check_size(self) -> None:
        used, bound = self.spool.size(), max_bytes()
        now = time.monotonic()
        if used * 2 >= bound and now - self._warned_size > 60:
            self._warned_size = now
            message = (
                f"spool holds {used} bytes, over half of KAIZEN_SPOOL_MAX_BYTES={bound}; "
                "events are dropped when it is full"
            )
            self.log(message)
            self.spool.warn(message)

    async def round(self) -> int:
        """Ship one round of sealed frames; the number of events (0 = nothing waiting)."""
        capture_pending(self.spool)  # usage events from transcripts the hooks noted
        frames = list(self.spool.sealed_frames())
        if not frames:
            # seal only when nothing sealed waits: while the broker is down the backlog
            # stays in two segments, so a hook's size check stats two files, not thousands
            self.spool.seal()
            frames = list(self.spool.sealed_frames())
        if not frames:
            segs = self.spool.segments()
            if len(segs) > 1:  # sealed segments hold nothing good: move past them
                last = segs[-2]
                self.spool.write_commit(last, os.stat(self.spool.seg_path(last)).st_size)
                self.spool.drop_before(*self.spool.read_commit())
            return 0
        events: list[dict[str, Any]] = []
        bad: list[tuple[Frame, str]] = []
        for frame in frames:
            fields, reason = check_frame(frame)
            if fields is None:
                bad.append((frame, reason))
            else:
                events.append(fields)
        if self._producer is None:
            self._producer = await start_producer(self.bootstrap)
            # asked again with each new producer: a broker restarted on the same address
            self._check_acks = not acks_prove_landing(await cluster_id(self.bootstrap))
        delivery = await deliver(self._producer, events, topic=self.topic, max_batch=self.max_batch)
        if self._check_acks:
            await self._check_landed(delivery)
        if bad:
            quarantine(self.spool, bad)
            message = f"{len(bad)} event(s) cannot be sent; kept in {QUARANTINE}: {bad[0][1]}"
            self.log(message)
            self.spool.warn(message)
        sent = delivery.events
        tail = frames[-1]
        self.spool.write_commit(tail.segment, tail.end)
        self.spool.drop_before(tail.segment, tail.end)
        self.shipped += sent
        return len(frames)

    async def run(self, *, follow: bool = False, linger: float = 0.0, give_up: float = 60.0) -> int:
        """Ship until idle for `linger` seconds (forever with follow); the events shipped."""
        idle_since = time.monotonic()
        failing_since: float | None = None
        last_cause: str | None = None
        backoff = 0.2
        try:
            while True:
                try:
                    n = await self.round()
                except Exception as exc:
                    now = time.monotonic()
                    if failing_since is None:
                        failing_since = now
                    await self._close()
                    cause = await explain(exc, clients.connection(self.bootstrap))
                    if cause != last_cause:  # once per cause, not once per retry
                        last_cause = cause
                        self.log(f"cannot deliver: {cause}; keeping events in {self.spool.path}")
                    self._check_size()
                    if not follow and give_up and now - failing_since > give_up:
                        self.gave_up = True
                        return self.shipped
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if failing_since is not None:
                    self.log("delivering again")
                failing_since, last_cause = None, None
                backoff = 0.2
                if n:
                    idle_since = time.monotonic()
                    continue
                if not follow and time.monotonic() - idle_since >= linger:
                    return self.shipped
                await asyncio.sleep(self.poll)
        finally:
            await self._close()


def check_frame(frame: Frame) -> tuple[dict[str, Any] | None, str]:
    """The frame's Event fields when they can be sent, else None and the reason why not."""
    try:
        fields = frame.fields()
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(fields, dict) or "session_id" not in fields or "seq" not in fields:
        return None, "not an Event: no session_id and seq"
    try:
        item = encode_event(complete_event(fields))
    except Exception as exc:  # fastavro raises several types, each naming the field
        return None, f"cannot encode: {type(exc).__name__}: {exc}"
    size = len(item) + len(str(fields["session_id"]).encode()) + BATCH_OVERHEAD
    if size > MAX_MESSAGE_BYTES:
        return None, f"{size} bytes as a message, over the message limit of {MAX_MESSAGE_BYTES}"
    return fields, ""


def quarantine(spool: Spool, bad: list[tuple[Frame, str]]) -> None:
    """Append each frame with its reason to quarantine.jsonl, durably (before the commit)."""
    lines = []
    for frame, reason in bad:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "segment": frame.segment,
            "offset": frame.end - len(frame.body) - HEAD_SIZE,
            "reason": reason,
            "body": frame.body.decode("utf-8", "replace"),
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    fd = os.open(
        os.path.join(spool.path, QUARANTINE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
    )
    try:
        os.write(fd, "".join(lines).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(spool.path)


def status(spool: Spool) -> dict[str, Any]:
    return {
        "spool": spool.path,
        "bytes": spool.size(),
        "segments": len(spool.segments()),
        "commit": spool.read_commit(),
        "pending": spool.pending(),
        "shipper_running": spool.shipper_running(),
        "quarantined": quarantined(spool),
    }


def quarantined(spool: Spool) -> int:
    """How many frames quarantine.jsonl holds (0 when there is none)."""
    try:
        with open(os.path.join(spool.path, QUARANTINE), "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def status_json(spool: Spool) -> str:
    return json.dumps(status(spool))
