"""Owned partitions of ``kaizen.events``: their hot log, index, group commit and handoff.

`PartitionState` is one owned partition; `PartitionManager` (a mode.Service
living as long as the worker) opens a state when Faust assigns the partition,
brings it up to date, and closes it when the partition goes elsewhere.

Invariants:

* exactly-once order, per partition: decode → dedupe on (session_id, seq) →
  ``log.append_batch`` → ``log.flush()`` (fsync) → ``IndexBatch.commit`` with
  the watermark → ack the Faust events (only acked offsets are ever committed
  to Kafka). A message at or below the watermark is skipped whole, so
  redelivery after a crash duplicates nothing and dead-letters nothing again;
* the log and the index number records by *log offset* = epoch base + Kafka
  offset (`workers.ingest.epoch`); a new broker incarnation (the group has no
  committed offset while the partition has local data, or the probe message
  recorded for the epoch is no longer what the broker has at that offset)
  starts a new epoch above everything seen, and then only the (session_id, seq)
  dedupe keeps duplicates out;
* handoff: a newly assigned partition is *not ready* until its log has caught
  up to the group's committed offset (exact, unlike tansu's end offsets):
  from its own watermark when it has local data, from the start of the topic
  when it has none, read with a raw aiokafka consumer at the client's speed.
  Until then the ingest agent and `wait_ready` (replay) wait; nothing is
  served from a partition that is behind;
* `read_session` reads through the index, which never points past fsynced data;
* one writer per partition: the agent and the flusher task take ``state.lock``;
  the catch-up runs before the state is ready, when neither touches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import crc32c
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from mode import Service

from workers.hotlog import CommitPolicy, PartitionLog, RetentionPolicy
from workers.ingest import epoch as epochs
from workers.ingest import metrics
from workers.ingest.decode import DEFAULT_MAX_EVENT_BYTES, LeanDecoder
from workers.ingest.dlq import DeadLetter, dead_letter
from workers.kafka import clients
from workers.kafka.config import KafkaConnection
from workers.settings import DLQ_TOPIC, EVENTS_TOPIC, Settings
from workers.state import IndexBatch, PartitionStore

log = logging.getLogger(__name__)


class Ackable(Protocol):
    def ack(self) -> bool: ...


@dataclass(frozen=True)
class IngestConfig:
    """Tuning of the ingest path; the defaults suit one worker process per machine."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    segment_bytes: int = 64 << 20
    #: group commit: flush when any bound is reached
    flush_max_ms: float = 50.0
    flush_max_messages: int = 4_000
    flush_max_events: int = 50_000
    flush_max_bytes: int = 16 << 20
    #: catch-up reads
    catchup_fetch_bytes: int = 32 << 20
    catchup_stall_s: float = 60.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_every_s: float = 60.0
    stats_every_s: float = 1.0
    tick_s: float = 0.005


#: catching up "to the end" stops after this many empty polls (500 ms each) in a row
EMPTY_POLLS = 2


def partition_dir(settings: Settings, partition: int, topic: str = EVENTS_TOPIC) -> Path:
    return settings.hotlog_dir / f"{topic}-{partition}"


def partition_for_key(key: bytes, partitions: int) -> int:
    """aiokafka's (and the Java client's) default partitioner: murmur2 of the key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionState:
    """One owned partition: its log + store + readiness, and the pending group commit."""

    log: PartitionLog
    store: PartitionStore

    def __init__(
        self,
        partition: int,
        directory: Path,
        *,
        topic: str = EVENTS_TOPIC,
        decoder: LeanDecoder | None = None,
        config: IngestConfig | None = None,
    ) -> None:
        self.partition = partition
        self.directory = directory
        self.topic = topic
        self.config = config or IngestConfig()
        self.decoder = decoder or LeanDecoder(self.config.max_event_bytes)
        self.ready = asyncio.Event()
        self.lock = asyncio.Lock()
        self.counters = metrics.Counters()
        self.epoch = epochs.Epoch()
        self.opened = False
        self.closed = False
        self._released = False
        self._release_lock = threading.Lock()
        self.next_offset: int | None = None  # next Kafka offset to process (for lag)
        self._batch: IndexBatch | None = None
        self._pending_offset = -1  # log offset of the last message processed, not committed
        self._pending_messages = 0
        self._pending_events = 0
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._acks: list[Ackable] = []
        self._dlq: list[Awaitable[Any]] = []
        self._probe: tuple[int, int] | None = None  # (kafka offset, crc) to record at commit
        self._inflight: asyncio.Future[None] | None = None  # the group commit under way
        self._inflight_batch: IndexBatch | None = None

    # ------------------------------------------------------------------ opening

    def open(self) -> None:
        """Open the log (recovering torn tails) and the index (rebuilt when it disagrees)."""
        cfg = self.config
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = PartitionLog.open(
            self.directory,
            topic=self.topic,
            partition=self.partition,
            segment_bytes=cfg.segment_bytes,
            commit=CommitPolicy(
                max_bytes=cfg.flush_max_bytes,
                max_records=cfg.flush_max_events,
                max_ms=cfg.flush_max_ms,
            ),
            retention=cfg.retention,
        )
        try:
            self.store = self._open_store()
        except BaseException:
            self.log.close()
            raise
        self.epoch = epochs.load(self.directory)
        self.counters = metrics.load(self.directory)
        self.opened = True
        if self.closed:  # closed (revoked) while this ran in a thread: release the files now
            self._release()

    def _open_store(self) -> PartitionStore:
        from workers.state.rebuild import catch_up, index_matches_log, rebuild_partition

        try:
            store = PartitionStore.open(self.directory, self.partition)
        except Exception as exc:  # e.g. FormatMismatch, a damaged index
            log.warning("partition %d: index unusable (%s); rebuilding", self.partition, exc)
            return rebuild_partition(self.directory, self.partition, self.log)
        if index_matches_log(store, self.log):
            # frames appended (and fsynced) after the last index commit: index them now
            added = catch_up(store, self.log)
            if added:
                log.info("partition %d: indexed %d frames the index lagged", self.partition, added)
            return store
        log.warning("partition %d: index disagrees with the log; rebuilding", self.partition)
        store.close()
        return rebuild_partition(self.directory, self.partition, self.log)

    @property
    def has_local_data(self) -> bool:
        return self.store.watermark >= 0 or self.log.last_offset is not None

    def new_epoch(self, reason: str) -> None:
        """Start numbering at one past everything seen (a new broker incarnation)."""
        last = self.log.last_offset
        base = max(self.store.watermark, -1 if last is None else last) + 1
        base = max(base, self.epoch.base)
        log.warning(
            "partition %d: %s; new broker incarnation assumed, log offsets now start at %d "
            "(dedupe on (session_id, seq) alone for redelivered events)",
            self.partition,
            reason,
            base,
        )
        self.epoch = epochs.Epoch(base)
        epochs.store(self.directory, self.epoch)

    @property
    def next_kafka_offset(self) -> int:
        """The first Kafka offset not yet durably processed (by the watermark)."""
        return max(self.store.watermark - self.epoch.base + 1, 0)

    # ------------------------------------------------------------------ reading

    def read_session(
        self, session_id: str, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, single-object event bytes) in seq order, through the index."""
        read = self.log.read
        for seq, loc in self.store.locations(session_id, from_seq, to_seq):
            yield seq, read(loc)

    # ------------------------------------------------------------------ ingest

    def process(
        self, offset: int, value: bytes | None, key: bytes | None = None
    ) -> list[DeadLetter]:
        """Decode, dedupe and append one Kafka message; returns what to dead-letter.

        Durable only after the next `flush`. The caller holds ``lock`` (or owns the
        state alone during catch-up) and later acks the message via `add_ack`.
        """
        log_offset = self.epoch.base + offset
        self.next_offset = offset + 1
        if self._pending_messages == 0:
            self._pending_since = time.monotonic()
        # counted as pending even when skipped: its ack goes out with the next group commit
        self._pending_messages += 1
        if log_offset <= self._pending_offset or log_offset <= self.store.watermark:
            self.counters.skipped_messages += 1
            return []
        self._pending_offset = log_offset
        if self.epoch.probe_offset is None and self._probe is None and value is not None:
            self._probe = (offset, crc32c.crc32c(value))
        counters = self.counters
        counters.messages += 1
        result = self.decoder.message(value)
        letters: list[DeadLetter] = []
        if result.rejected:
            whole = len(result.rejected) == 1 and not result.events
            for i, bad in enumerate(result.rejected):
                letters.append(
                    dead_letter(
                        reason=bad.reason,
                        detail=bad.detail,
                        data=bad.data,
                        topic=self.topic,
                        partition=self.partition,
                        offset=offset,
                        key=key,
                        index=None if whole else i,
                    )
                )
            counters.dead_lettered += len(result.rejected)
        events = result.events
        if not events:
            return letters
        batch = self._batch
        if batch is None:
            batch = self._batch = self.store.begin(behind=self._inflight_batch)
        fresh = batch.fresh(events)
        counters.duplicates += len(events) - len(fresh)
        if not fresh:
            return letters
        locations = self.log.append_batch([ev.data for ev in fresh], log_offset)
        add = batch.add
        size = 0
        for ev, loc in zip(fresh, locations, strict=True):
            add(ev.session_id, ev.seq, loc, ev.ts_ms, ev.agent, ev.model)
            size += len(ev.data)
        counters.ingested += len(fresh)
        counters.bytes += size
        self._pending_events += len(fresh)
        self._pending_bytes += size
        return letters

    def add_ack(self, ack: Ackable) -> None:
        self._acks.append(ack)

    def add_dlq(self, delivery: Awaitable[Any]) -> None:
        self._dlq.append(delivery)

    @property
    def pending_messages(self) -> int:
        return self._pending_messages

    def want_flush(self, now: float | None = None) -> bool:
        if not self._pending_messages:
            return False
        if self.committing and self._pending_messages < self.config.flush_max_messages:
            return False  # one commit in flight: keep batching behind it
        cfg = self.config
        if (
            self._pending_messages >= cfg.flush_max_messages
            or self._pending_events >= cfg.flush_max_events
            or self._pending_bytes >= cfg.flush_max_bytes
        ):
            return True
        now = time.monotonic() if now is None else now
        return (now - self._pending_since) * 1000.0 >= cfg.flush_max_ms

    def _fsync(self, probe: tuple[int, int] | None) -> None:
        """In an executor thread: the epoch's probe (first commit of an epoch), then the log."""
        if probe is not None:
            self.epoch = epochs.Epoch(self.epoch.base, probe[0], probe[1])
            epochs.store(self.directory, self.epoch)
        self.log.flush()

    async def flush(self, wait: bool = True) -> None:
        """Group commit of everything processed so far. Caller holds ``lock``.

        Pipelined: the fsync runs in an executor thread while the agent goes on processing
        into a new batch; at most one commit is in flight and commits complete in order.
        Its steps: dead letters delivered → log fsynced → index batch committed with the
        watermark (on the loop thread, so dedupe never races it) → messages acked. With
        ``wait`` (the default) return only when that is done.
        """
        await self._await_inflight()
        if self._pending_messages:
            deliveries, self._dlq = self._dlq, []
            batch = self._batch if self._batch is not None else self.store.begin()
            self._batch = None
            acks, self._acks = self._acks, []
            probe, self._probe = self._probe, None
            self._pending_messages = self._pending_events = self._pending_bytes = 0
            self._inflight_batch = batch
            self._inflight = asyncio.ensure_future(
                self._commit(batch, self._pending_offset, probe, acks, deliveries)
            )
        if wait:
            await self._await_inflight()

    async def _commit(
        self,
        batch: IndexBatch,
        watermark: int,
        probe: tuple[int, int] | None,
        acks: list[Ackable],
        deliveries: list[Awaitable[Any]],
    ) -> None:
        try:
            if deliveries:  # dead letters are delivered before their offsets can be committed
                await asyncio.gather(*deliveries)
            await asyncio.get_running_loop().run_in_executor(None, self._fsync, probe)
            batch.commit(watermark)  # only after the fsync: never points past durable data
        except BaseException:
            if not batch.closed:
                batch.abort()
            raise
        for ack in acks:
            ack.ack()
        self.counters.flushes += 1

    async def _await_inflight(self) -> None:
        fut = self._inflight
        if fut is None:
            return
        try:
            await asyncio.shield(fut)
        finally:
            if self._inflight is fut and fut.done():
                self._inflight = None
                self._inflight_batch = None

    @property
    def committing(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    def save_stats(self) -> None:
        with contextlib.suppress(OSError):
            metrics.save(self.directory, self.counters)

    def enforce_retention(self) -> None:
        # Index entries go first, so the index never points into a deleted segment.
        expired = self.log.expired_segments()
        if expired:
            self.store.remove_segments(expired)
            self.log.delete_segments(expired)

    def close(self) -> None:
        """Close log and store; pending (unflushed) work is dropped, never acked.

        Also wakes whoever waits on ``ready`` (the agent, `wait_ready`): they check
        ``closed`` and let go of the partition.
        """
        if self.closed:
            return
        self.closed = True
        if self._batch is not None:
            self._batch.abort()
            self._batch = None
        if self.opened:
            self._release()
        self.ready.set()

    def _release(self) -> None:
        with self._release_lock:  # close() on the loop and open() in a thread may both get here
            if self._released:
                return
            self._released = True
            self.save_stats()
            self.store.close()
            self.log.close()


class PartitionManager(Service):
    """The partitions of ``kaizen.events`` this worker owns; lives as long as the worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str = EVENTS_TOPIC,
        group_id: str | None = None,
        config: IngestConfig | None = None,
        highwater: Callable[[int], int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.config = config or IngestConfig()
        self.decoder = LeanDecoder(self.config.max_event_bytes)
        self.highwater = highwater
        self._states: dict[int, PartitionState] = {}
        self._handoffs: dict[int, asyncio.Task[None]] = {}
        self._assigned: set[int] = set()
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ the API of replay

    def get(self, partition: int) -> PartitionState | None:
        return self._states.get(partition)

    def owned(self) -> list[int]:
        return sorted(self._states)

    async def wait_ready(self, partition: int, timeout: float) -> PartitionState:
        """The partition's state once it has caught up; TimeoutError if not within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            state = self._states.get(partition)
            left = deadline - time.monotonic()
            if state is not None and state.ready.is_set() and not state.closed:
                return state
            if state is not None and state.closed and self._states.get(partition) is state:
                await asyncio.sleep(min(max(left, 0), 0.05))  # being replaced: poll
            if left <= 0:
                raise TimeoutError(f"partition {partition} is not ready on this worker")
            if state is not None and not state.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.ready.wait(), min(left, 0.5))
            else:
                await asyncio.sleep(min(left, 0.05))

    def partition_for(self, session_id: str) -> int:
        return partition_for_key(session_id.encode(), self.settings.partitions)

    # ------------------------------------------------------------------ rebalance

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        """Faust's full assignment: open new partitions (catch-up in a task), close gone ones."""
        mine = {tp.partition for tp in assigned if tp.topic == self.topic}
        self._assigned = mine
        for p in [p for p in self._states if p not in mine]:
            await self._close_partition(p)
        for p in sorted(mine - self._states.keys()):
            state = PartitionState(
                p,
                partition_dir(self.settings, p, self.topic),
                topic=self.topic,
                decoder=self.decoder,
                config=self.config,
            )
            self._states[p] = state
            self._handoffs[p] = asyncio.ensure_future(self._handoff(state))

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Flush what is pending so its offsets go out with Faust's commit on revoke."""
        for tp in revoked:
            if tp.topic != self.topic:
                continue
            state = self._states.get(tp.partition)
            if state is not None and state.ready.is_set() and not state.closed:
                async with state.lock:
                    await state.flush()

    async def _close_partition(self, p: int) -> None:
        state = self._states.pop(p, None)
        task = self._handoffs.pop(p, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if state is None:
            return
        async with state.lock:
            if state.opened and not state.closed:
                with contextlib.suppress(Exception):
                    await state.flush()
            state.close()
        log.info("partition %d: closed (assigned elsewhere)", p)

    # ------------------------------------------------------------------ handoff

    async def _handoff(self, state: PartitionState) -> None:
        p = state.partition
        try:
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, state.open)
            committed = await self.committed_offset(p)
            if state.has_local_data:
                if committed is None:
                    state.new_epoch("the group has no committed offset but the log has data")
                elif not await self._probe_matches(state):
                    state.new_epoch("the broker holds other data at the epoch's first offset")
            start = state.next_kafka_offset
            if committed is None:
                # A new group (or one the broker forgot): Faust starts from the earliest
                # offset, so without this a replay would see the partition half ingested.
                # Read what the topic holds first; "the end" is where polls come back empty
                # (tansu's end offsets are the start of the last batch + 1).
                state.next_offset = await self._catch_up(state, start, None)
            else:
                if start < committed:
                    await self._catch_up(state, start, committed)
                state.next_offset = committed
            state.ready.set()
            log.info(
                "partition %d: ready in %.2fs (watermark %d, committed %s)",
                p,
                time.monotonic() - started,
                state.store.watermark,
                committed,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("partition %d: handoff failed", p)
            await self.crash(exc)

    def _bootstrap(self) -> KafkaConnection:
        return self.settings.kafka

    async def committed_offset(self, partition: int) -> int | None:
        """The group's committed offset of the partition (exact), None when it has none."""
        if self.group_id is None:
            return None
        tp = TopicPartition(self.topic, partition)
        admin = clients.new_admin(self._bootstrap(), request_timeout_ms=10000)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        finally:
            await admin.close()
        meta = offsets.get(tp)
        if meta is None or meta.offset is None or meta.offset < 0:
            return None
        return int(meta.offset)

    def _consumer(self) -> AIOKafkaConsumer:
        return clients.new_consumer(
            self._bootstrap(),
            role="catch-up",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=self.config.catchup_fetch_bytes,
            max_partition_fetch_bytes=self.config.catchup_fetch_bytes,
        )

    async def _probe_matches(self, state: PartitionState) -> bool:
        """Does the broker still hold the epoch's first message at its offset?"""
        probe_offset, probe_crc = state.epoch.probe_offset, state.epoch.probe_crc
        if probe_offset is None or probe_crc is None:
            return True  # nothing recorded yet: the committed offset decided
        tp = TopicPartition(self.topic, state.partition)
        consumer = self._consumer()
        await consumer.start()
        try:
            consumer.assign([tp])
            earliest = (await consumer.beginning_offsets([tp]))[tp]
            if earliest > probe_offset:
                return True  # removed by retention: cannot tell, trust the committed offset
            consumer.seek(tp, probe_offset)
            deadline = time.monotonic() + 2.0  # empty polls until then: nothing there
            while time.monotonic() < deadline:
                got = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                for rec in got.get(tp, []):
                    return bool(
                        rec.offset == probe_offset
                        and rec.value is not None
                        and crc32c.crc32c(rec.value) == probe_crc
                    )
            return False  # nothing at that offset: the topic is shorter than it was
        finally:
            await consumer.stop()

    async def _catch_up(self, state: PartitionState, start: int, end: int | None) -> int:
        """Read [start, end) of the source topic into the log at the client's raw speed.

        With end None, read until EMPTY_POLLS polls in a row come back empty. Returns the
        next offset to read. Up to a committed offset, whoever processed those offsets first
        sent their dead letters; to the end (no committed offset), nobody did, so this does,
        and each group commit waits for their delivery as the agent's does.
        """
        p = state.partition
        tp = TopicPartition(self.topic, p)
        consumer = self._consumer()
        dlq: AIOKafkaProducer | None = None
        if end is None:
            dlq = await clients.start_producer(self._bootstrap(), "dlq")
        await consumer.start()
        t0 = time.monotonic()
        n = 0
        try:
            consumer.assign([tp])
            earliest = (await consumer.beginning_offsets([tp]))[tp]
            if start < earliest:
                log.error(
                    "partition %d: offsets %d..%d were deleted by the topic's retention before "
                    "this worker had them; their events are lost to this hot log "
                    "(see docs/OPERATIONS.md, retention)",
                    p,
                    start,
                    earliest - 1,
                )
                start = earliest
            consumer.seek(tp, start)
            upto = "the end" if end is None else str(end - 1)
            log.info("partition %d: catching up offsets %d..%s", p, start, upto)
            position = start
            last_progress = time.monotonic()
            empty = 0
            while end is None or position < end:
                got = await consumer.getmany(tp, timeout_ms=500, max_records=20_000)
                records = got.get(tp, [])
                if not records:
                    empty += 1
                    if end is None and empty >= EMPTY_POLLS:
                        break
                    if time.monotonic() - last_progress > self.config.catchup_stall_s:
                        raise RuntimeError(
                            f"partition {p}: catch-up stalled at offset {position} of {end}"
                        )
                    continue
                last_progress = time.monotonic()
                empty = 0
                for rec in records:
                    if end is not None and rec.offset >= end:
                        position = end
                        break
                    letters = state.process(rec.offset, rec.value, rec.key)
                    if dlq is not None:
                        for letter in letters:
                            delivery = await dlq.send(
                                DLQ_TOPIC, letter.value, key=letter.key, headers=letter.headers
                            )
                            state.add_dlq(delivery)
                    position = rec.offset + 1
                    n += 1
                if state.want_flush():
                    await state.flush(wait=False)
            await state.flush()
        finally:
            await consumer.stop()
            if dlq is not None:
                await dlq.stop()
        log.info("partition %d: caught up %d messages in %.2fs", p, n, time.monotonic() - t0)
        return position

    # ------------------------------------------------------------------ background

    @Service.task
    async def _flusher(self) -> None:
        """Group commits on time (the agent flushes on size), stats, retention."""
        last_stats = last_retention = time.monotonic()
        cfg = self.config
        while not self.should_stop:
            await asyncio.sleep(cfg.tick_s)
            now = time.monotonic()
            for state in list(self._states.values()):
                if state.closed or not state.ready.is_set():
                    continue
                if state.want_flush(now) and not state.lock.locked():
                    async with state.lock:
                        if not state.closed:
                            await state.flush(wait=False)
            if now - last_stats >= cfg.stats_every_s:
                last_stats = now
                for state in list(self._states.values()):
                    if state.opened and not state.closed:
                        self._update_lag(state)
                        state.save_stats()
            if cfg.retention.max_age_s is None and cfg.retention.max_bytes is None:
                continue
            if now - last_retention >= cfg.retention_every_s:
                last_retention = now
                for state in list(self._states.values()):
                    if state.ready.is_set() and not state.closed:
                        async with state.lock:
                            state.enforce_retention()

    def _update_lag(self, state: PartitionState) -> None:
        if self.highwater is None or state.next_offset is None:
            return
        with contextlib.suppress(Exception):
            hw = self.highwater(state.partition)
            if hw is not None:
                state.counters.lag = max(hw - state.next_offset, 0)

    def render_metrics(self) -> str:
        rows = []
        for p, state in sorted(self._states.items()):
            if state.opened and not state.closed:
                self._update_lag(state)
            rows.append((p, state.counters, state.ready.is_set()))
        return metrics.render(rows)

    async def on_stop(self) -> None:
        for p in list(self._states):
            await self._close_partition(p)
