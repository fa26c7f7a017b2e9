"""PartitionState: one owned partition of ``kaizen.events``: its hot log, index, group commit.

The assignment (:mod:`workers.ingest.assignment`) opens a state when Faust assigns the
partition, the catch-up (:mod:`workers.ingest.catchup`) brings it up to date, and then the
live feed (:mod:`workers.ingest.feed`) feeds it messages; the flusher
(:mod:`workers.ingest.flusher`) commits on time.

Invariants:

* exactly-once order, per partition: decode → dedupe on (session_id, producer, seq) →
  ``log.append_batch`` → ``log.flush()`` (fsync) → ``IndexBatch.commit`` with
  the watermark; the offset committed to the group is the one past the watermark
  (`next_kafka_offset`, committed by the live feed), so never past durable data. A
  message at or below the watermark appends nothing, so redelivery after a crash
  duplicates nothing;
* dead letters at least once: a dead letter is delivered before the group commit that
  covers its offset, but a kill before that commit can leave later messages in the log,
  and recovery then puts the watermark past the dead-lettered one. So the catch-up sets
  ``resend_letters_below`` to the first offset past the log: a redelivered message from the
  group's committed offset up to there is decoded again and only its dead letters are sent
  (again: a dead letter delivered before the kill comes twice);
* the log and the index number records by *log offset* = epoch base + Kafka
  offset (`workers.ingest.epoch`); a new broker incarnation starts a new epoch
  above everything seen (`new_epoch`), and then only the (session_id, producer, seq)
  dedupe keeps duplicates out (the live feed reads a partition in a new epoch from a new
  position, so nothing fetched from the old incarnation is numbered in it);
* group commits are pipelined: at most one is in flight, they complete in order,
  and the batch being filled dedupes against the one committing behind it; a group
  commit that fails (an fsync, a dead letter refused), or a dead letter the producer
  refuses as it is handed over (`take`), fails every later one with the same error, so
  no watermark ever covers the offsets of the failed one (the state must be closed and
  opened again: a worker restart);
* `read_session` reads through the index, which never points past fsynced data;
* retention commits what is pending before it deletes anything, so no index entry (written
  or still in a batch) points into a deleted segment;
* one writer per partition: the live feed, the flusher and healing
  (`workers.ingest.heal.heal_state`, started by a partial replay) take ``state.lock``;
  the catch-up runs before the state is ready, when neither touches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from workers.analytics.store import SummaryStore
from workers.broker.cluster import Incarnation
from workers.hotlog import PartitionLog
from workers.ingest import epoch as epochs
from workers.ingest import metrics, testpoint
from workers.ingest.config import IngestConfig
from workers.ingest.decode import LeanDecoder, MessageResult
from workers.ingest.dlq import DeadLetter, dead_letter
from workers.settings import EVENTS_TOPIC
from workers.state import IndexBatch, PartitionStore

log = logging.getLogger(__name__)

#: hands one dead letter to a producer; the delivery (awaited by the group commit) back
SendDeadLetter = Callable[[DeadLetter], Awaitable[Awaitable[Any]]]


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
        #: Kafka offsets from the group's committed offset up to this one are in the log, but
        #: their dead letters may never have been delivered (set by the catch-up)
        self.resend_letters_below = 0
        self._batch: IndexBatch | None = None
        self._pending_offset = -1  # log offset of the last message processed, not committed
        self._pending_messages = 0
        self._pending_events = 0
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._dlq: list[Awaitable[Any]] = []
        self._inflight: asyncio.Future[None] | None = None  # the group commit under way
        self._inflight_batch: IndexBatch | None = None
        self.summaries: SummaryStore | None = None
        #: why a group commit failed: every later flush raises it (see the invariants)
        self.failed: BaseException | None = None

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
            commit=cfg.commit,
            retention=cfg.retention,
        )
        try:
            self.store = self._open_store()
            if cfg.aggregates:
                self.summaries = SummaryStore.open(self.directory)
        except BaseException:
            if hasattr(self, "store"):
                self.store.close()
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

    def new_epoch(self, reason: str, now: Incarnation) -> None:
        """Start numbering at one past everything seen (a new broker incarnation, which
        the broker reports as `now`)."""
        last = self.log.last_offset
        base = max(self.store.watermark, -1 if last is None else last) + 1
        base = max(base, self.epoch.base)
        log.warning(
            "partition %d: %s; new broker incarnation assumed, log offsets now start at %d "
            "(dedupe on (session_id, producer, seq) alone for redelivered events)",
            self.partition,
            reason,
            base,
        )
        self.epoch = epochs.Epoch(base).confirmed(now)
        epochs.store(self.directory, self.epoch)

    def confirm_epoch(self, now: Incarnation) -> None:
        """Record `now` as the incarnation the epoch numbers (when it says more than the
        file), before anything is appended under it."""
        confirmed = self.epoch.confirmed(now)
        if confirmed != self.epoch:
            self.epoch = confirmed
            epochs.store(self.directory, confirmed)

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
        state alone during catch-up).
        """
        log_offset = self.epoch.base + offset
        self.next_offset = offset + 1
        if self._pending_messages == 0:
            self._pending_since = time.monotonic()
        # counted as pending even when skipped: the next group commit covers its offset
        self._pending_messages += 1
        if log_offset <= self._pending_offset or log_offset <= self.store.watermark:
            self.counters.skipped_messages += 1
            if log_offset > self._pending_offset and offset < self.resend_letters_below:
                # durable, but its dead letters may have died with the worker: send them again
                return self._dead_letters(offset, self.decoder.message(value), key)
            return []
        self._pending_offset = log_offset
        counters = self.counters
        counters.messages += 1
        result = self.decoder.message(value)
        letters = self._dead_letters(offset, result, key)
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
            add(ev.session_id, ev.seq, loc, ev.ts_ms, ev.agent, ev.model, ev.producer)
            size += len(ev.data)
        self._pending_events += len(fresh)
        self._pending_bytes += size
        return letters

    def _dead_letters(
        self, offset: int, result: MessageResult, key: bytes | None
    ) -> list[DeadLetter]:
        whole = len(result.rejected) == 1 and not result.events
        self.counters.dead_lettered += len(result.rejected)
        return [
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
            for i, bad in enumerate(result.rejected)
        ]

    def add_dlq(self, delivery: Awaitable[Any]) -> None:
        self._dlq.append(delivery)

    def want_flush(self, now: float | None = None) -> bool:
        """Is the pending work due for its group commit (``IngestConfig.commit``)?"""
        if not self._pending_messages:
            return False
        policy = self.config.commit
        if self.committing and not policy.messages_full(self._pending_messages):
            return False  # one commit in flight: keep batching behind it
        now = time.monotonic() if now is None else now
        return policy.due(
            self._pending_events,
            self._pending_bytes,
            (now - self._pending_since) * 1000.0,
            self._pending_messages,
        )

    async def flush(self, wait: bool = True) -> None:
        """Group commit of everything processed so far. Caller holds ``lock``.

        Pipelined: the fsync runs in an executor thread while the feed goes on processing
        into a new batch; at most one commit is in flight and commits complete in order.
        Its steps: dead letters delivered → log fsynced → index batch committed with the
        watermark (on the loop thread, so dedupe never races it); the offset past the
        watermark is what the feed commits to the group. With ``wait`` (the default)
        return only when that is done.
        """
        await self._await_inflight()
        if self.failed is not None:
            raise self.failed
        if self._pending_messages:
            deliveries, self._dlq = self._dlq, []
            batch = self._batch if self._batch is not None else self.store.begin()
            self._batch = None
            events, size = self._pending_events, self._pending_bytes
            self._pending_messages = self._pending_events = self._pending_bytes = 0
            self._inflight_batch = batch
            self._inflight = asyncio.ensure_future(
                self._commit(batch, self._pending_offset, deliveries, (events, size))
            )
        if wait:
            await self._await_inflight()

    async def _commit(
        self,
        batch: IndexBatch,
        watermark: int,
        deliveries: list[Awaitable[Any]],
        ingested: tuple[int, int],
    ) -> None:
        """One group commit; ``ingested``: (events, bytes) it makes durable and indexed."""
        try:
            if deliveries:  # dead letters are delivered before their offsets can be committed
                await asyncio.gather(*deliveries)
            await asyncio.get_running_loop().run_in_executor(None, self.log.flush)
            batch.commit(watermark)  # only after the fsync: never points past durable data
        except BaseException as exc:
            self.failed = exc
            if not batch.closed:
                batch.abort()
            raise
        # counted only now: bench_ingest stops its clock on this counter
        self.counters.ingested += ingested[0]
        self.counters.bytes += ingested[1]
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

    async def enforce_retention(self) -> None:
        """Delete the segments the retention policy lets go, with their index entries.

        Caller holds ``lock``. Everything pending is committed first: entries of a batch
        not yet written (or in flight) may point into an old segment, and would land in
        the index after its removal. The index entries go before the files (a synced
        write), so the index never points into a deleted segment, also after a power cut.
        """
        await self.flush()
        expired = self.log.expired_segments()
        if expired:
            self.store.remove_segments(expired)
            self.log.delete_segments(expired)

    def close(self) -> None:
        """Close log and store; pending (unflushed) work is dropped, never committed.

        Also wakes whoever waits on ``ready`` (`wait_ready`): they check
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
            if self.summaries is not None:
                self.summaries.close()
            self.store.close()
            self.log.close()

    def fold_summaries(self, max_frames: int) -> int:
        """Fold durable frames into the session summaries; how many (0: caught up or off)."""
        if self.summaries is None or self.closed:
            return 0
        return self.summaries.fold_log(self.log, self.store.max_location, max_frames)


async def take(state: PartitionState, record: Any, send: SendDeadLetter | None) -> None:
    """One Kafka record (offset, value, key) into its partition's pending group commit;
    the caller holds ``state.lock`` or owns the state alone. Its dead letters are handed to
    `send` and their deliveries awaited by the group commit; with no `send` they are
    dropped (offsets up to the group's committed one: whoever processed them first sent
    them)."""
    letters = state.process(record.offset, record.value, record.key)
    sent = []
    if letters and send is not None:
        try:
            sent = [await send(letter) for letter in letters]
        except BaseException as exc:
            # processed, but its dead letter never went out: no group commit may cover it
            state.failed = exc
            raise
    for delivery in sent:
        state.add_dlq(delivery)
    if testpoint.ARMED:
        testpoint.after_message(state.partition, sent)
