"""Catch-up: bringing a newly assigned partition's hot log up to date before it serves.

Kept apart from the partition manager (:mod:`workers.ingest.assignment`), the way Quix
Streams and Faust keep recovery apart from assignment.

Invariants:

* a newly assigned partition is *not ready* until its log has caught up to the group's
  committed offset (exact, unlike tansu's end offsets): from its own watermark when it has
  local data, from the start of the topic when it has none, read with a raw aiokafka
  consumer at the client's speed.  Until then the ingest agent holds the partition's messages
  (``PartitionManager.hold``) and ``wait_ready`` (replay) waits; nothing is served from a
  partition that is behind, and each partition catches up in its own task. With no
  committed offset (a new group) it reads to the end offset Apache Kafka reports when it
  begins (exact); the embedded broker's end offsets are the start of the last batch + 1,
  so there it reads until polls come back empty (``workers.broker.cluster`` tells them apart);
* a partition kept across a rebalance is not ready again until the group's committed
  offset is checked: past its log, another member owned it meanwhile, and the offsets
  between are read first (``rejoin``);
* a new broker incarnation starts a new epoch (``PartitionState.new_epoch``), told by
  `workers.ingest.epoch.went_back` from what the broker reports (cluster id, topic id,
  the partition's exact end offset against the watermark), checked at every handoff, at
  every rejoin, and whenever the ingest agent is given an offset below the next one it
  expects (`verify`: the consumer's position moved back, as it does when offsets go back
  under a running worker). In a new epoch, a message the consumer fetched from the old
  incarnation is never numbered in the new one (`sift`). What the broker reports is
  recorded with the epoch (``PartitionState.confirm_epoch``) before anything is appended
  under it. A group
  without a committed offset is no new incarnation by itself: the partition reads on from
  its watermark, so expired group offsets never make it ingest or dead-letter twice;
* up to a committed offset, whoever processed those offsets first sent their dead letters;
  to the end (no committed offset) nobody did, so the catch-up does, and each group commit
  waits for their delivery as the agent's does; past the committed offset, what the log
  holds may have lost its dead letters with a killed worker, so the agent sends them again
  (``PartitionState.resend_letters_below``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from workers.broker.cluster import cluster_id, incarnation, is_embedded
from workers.ingest import epoch as epochs
from workers.ingest.config import IngestConfig
from workers.ingest.partition import PartitionState
from workers.kafka import clients
from workers.settings import DLQ_TOPIC

log = logging.getLogger(__name__)

#: what the ingest agent does with a message `CatchUp.verify` was asked about: process it,
#: ack it unprocessed (fetched from an old incarnation), or leave it (the partition is gone)
Verdict = Literal["process", "stale", "revoked"]

#: on the embedded broker, whose end offsets are not exact, catching up "to the end" stops
#: after this many empty polls (500 ms each) in a row
EMPTY_POLLS = 2


class CatchUp:
    """Reads a partition's missing offsets from the source topic into its hot log."""

    def __init__(
        self, bootstrap: clients.Target, topic: str, group_id: str | None, config: IngestConfig
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.config = config
        self._exact_ends: bool | None = None
        #: suspect partitions: a consumer for their end offsets, the last offset not processed
        self._probes: dict[int, AIOKafkaConsumer] = {}
        self._dropped: dict[int, int] = {}

    async def handoff(self, state: PartitionState) -> None:
        """Open the partition, settle its epoch and read what it lacks (the partition
        manager then processes what it held meanwhile and marks it ready)."""
        p = state.partition
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, state.open)
        committed, end = await self.group_offset(p)
        await self.settle_epoch(state, end, group_forgot=committed is None)
        await self.read_missing(state, committed)
        log.info(
            "partition %d: caught up in %.2fs (watermark %d, committed %s)",
            p,
            time.monotonic() - started,
            state.store.watermark,
            committed,
        )

    async def group_offset(self, partition: int) -> tuple[int | None, int | None]:
        """(the group's committed offset, the partition's exact end offset or None).

        A committed offset past the exact end is not the group's word on this log: it was
        committed for another incarnation (seen on Apache Kafka: after the topic was made
        again under a running worker, the group held a committed offset past the new
        topic's end), so it counts as none, and the catch-up reads to the end instead of
        waiting for offsets that do not exist.
        """
        committed = await self.committed_offset(partition)
        end = await self.end_offset(partition) if await self.exact_end_offsets() else None
        if committed is not None and end is not None and committed > end:
            log.warning(
                "partition %d: the group's committed offset %d is past the log's end %d "
                "(committed for another incarnation of the topic): ignored",
                partition,
                committed,
                end,
            )
            committed = None
        return committed, end

    async def settle_epoch(
        self, state: PartitionState, end: int | None, *, group_forgot: bool
    ) -> bool:
        """Start a new epoch if the broker's offsets are a new incarnation for the partition
        (True then), and record what the broker reports with the epoch. `end` is the
        partition's exact end offset, None where the broker reports none (the embedded
        broker: its end offsets are the start of the last batch + 1, below the true end, so
        the end-against-watermark check would see offsets go back where none did)."""
        now = await incarnation(self.bootstrap, self.topic)
        reason = None
        if state.has_local_data:
            reason = epochs.went_back(
                state.epoch,
                now,
                end=end,
                next_offset=state.next_kafka_offset,
                group_forgot=group_forgot,
            )
        if reason is not None:
            state.new_epoch(reason, now)
        else:
            state.confirm_epoch(now)
        return reason is not None

    async def read_missing(self, state: PartitionState, committed: int | None) -> None:
        """Read what the log lacks of the partition, past its watermark: to the group's
        committed offset, or to the end when the group has none."""
        start = state.next_kafka_offset
        if committed is not None:
            # [committed, start) is in the log but was never committed to the group: the
            # worker died before its group commit, maybe before its dead letters went out
            state.resend_letters_below = start
        if committed is None:
            # A new group (or one the broker forgot): Faust starts from the earliest
            # offset, so without this a replay would see the partition half ingested.
            # Read what the topic holds first, to the end offset the broker reports now
            # (an exact snapshot on Apache Kafka, so producers writing on never keep the
            # partition catching up); on the embedded broker, whose end offsets are the
            # start of the last batch + 1, "the end" is where polls come back empty.
            to_snapshot = await self.exact_end_offsets()
            state.next_offset = await self.read(state, start, None, to_snapshot=to_snapshot)
        else:
            if start < committed:
                await self.read(state, start, committed)
            state.next_offset = committed

    async def rejoin(self, state: PartitionState) -> None:
        """A partition kept across a rebalance: read what the group committed past its log.

        That happens when another member owned it meanwhile (this worker stalled past its
        session timeout, was evicted and rejoined claiming it): Faust resumes it from the
        committed offset, and without this read the log would miss the offsets between.
        """
        p = state.partition
        committed, end = await self.group_offset(p)
        if await self.settle_epoch(state, end, group_forgot=committed is None):
            # offsets went back while the partition was kept (a topic made again under it)
            await self.read_missing(state, committed)
            return
        start = state.next_kafka_offset
        if committed is not None and start < committed:
            log.warning(
                "partition %d: the group committed offsets %d..%d while another member had "
                "it; reading them before this worker ingests on",
                p,
                start,
                committed - 1,
            )
            await self.read(state, start, committed)
            state.next_offset = committed

    async def exact_end_offsets(self) -> bool:
        """Are the broker's end offsets exact? Not on the embedded broker (see above)."""
        if self._exact_ends is None:
            self._exact_ends = not is_embedded(await cluster_id(self.bootstrap))
        return self._exact_ends

    async def committed_offset(self, partition: int) -> int | None:
        """The group's committed offset of the partition (exact), None when it has none."""
        if self.group_id is None:
            return None
        tp = TopicPartition(self.topic, partition)
        admin = clients.new_admin(self.bootstrap, request_timeout_ms=10000)
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
            self.bootstrap,
            role="catch-up",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=self.config.catchup_fetch_bytes,
            max_partition_fetch_bytes=self.config.catchup_fetch_bytes,
        )

    async def end_offset(self, partition: int) -> int:
        """The partition's end offset as the broker reports it now (exact on Apache Kafka:
        the high watermark, which a clean leader election never moves back)."""
        tp = TopicPartition(self.topic, partition)
        consumer = self._consumer()
        await consumer.start()
        try:
            consumer.assign([tp])
            return int((await consumer.end_offsets([tp]))[tp])
        finally:
            await consumer.stop()

    async def verify(self, state: PartitionState, offset: int, value: bytes | None) -> Verdict:
        """The ingest agent was given `offset`, below the next one it expects (the consumer's
        position moved back), or the partition is `suspect`: may it process the message?

        After a rebalance the position moves back to the group's committed offset
        (redelivery: skipped by the watermark); when the broker's offsets went back it is a
        new incarnation. The epoch is settled before the message is processed, and in a new
        epoch the message is sifted (`sift`): it may be the old incarnation's."""
        async with state.lock:
            if state.closed:
                return "revoked"
            await state.flush()  # nothing pending of the old numbering when it changes
            if not state.suspect:
                exact = await self.exact_end_offsets()
                end = await self.end_offset(state.partition) if exact else None
                if not await self.settle_epoch(state, end, group_forgot=False):
                    state.next_offset = offset  # checked down to here: the next jump back is
                    return "process"
                log.warning(
                    "partition %d: offsets went back under the running worker (now at %d)",
                    state.partition,
                    offset,
                )
            return await self.sift(state, offset, value)

    async def sift(self, state: PartitionState, offset: int, value: bytes | None) -> Verdict:
        """A message the consumer delivered in a new epoch: is it the new incarnation's?

        Nothing in a message says which incarnation it was fetched from, and the consumer
        delivers what it fetched before the topic was made again (seen on Apache Kafka: the
        old topic's offset 0, delivered after the new topic existed, took the new offset 0's
        place, and the new offset 0 was never stored). So the new incarnation is read from
        the broker instead, to its end, and the consumer's copy is processed only below that
        end (where the watermark skips it: it is only acked). A copy at or past the exact end
        was fetched from the old incarnation (the consumer fetches below the high
        watermark): "stale", acked unprocessed (a committed offset past the log is read by
        the next handoff or rejoin). Once a copy equals the broker's record at its offset
        the consumer reads the new incarnation: the partition is no longer suspect. Caller
        holds ``state.lock``."""
        p = state.partition
        start = state.next_kafka_offset
        seen: dict[int, bytes | None] = {}
        if offset >= start:
            exact = await self.exact_end_offsets()
            if exact and offset >= await self._probe_end(p):
                if self._dropped.get(p) != offset - 1:  # one line per run of them
                    log.info(
                        "partition %d: offset %d delivered is past the end of the new "
                        "incarnation: fetched from the old one, not processed",
                        p,
                        offset,
                    )
                self._dropped[p] = offset
                state.next_offset = start
                return "stale"
            start = await self.read(state, start, None, to_snapshot=exact, seen=(offset, seen))
        state.next_offset = start
        if offset >= start:  # the embedded broker (no exact end): past what polls returned
            return "stale"
        if offset in seen and seen[offset] == value:
            state.suspect = False
            self._dropped.pop(p, None)
            await self._close_probe(p)
            log.info("partition %d: the consumer reads the new incarnation", p)
        return "process"

    async def _probe_end(self, partition: int) -> int:
        """The partition's exact end offset, through a consumer kept while it is suspect
        (one request per message sifted, not a consumer started for each)."""
        tp = TopicPartition(self.topic, partition)
        probe = self._probes.get(partition)
        if probe is None:
            probe = self._consumer()
            await probe.start()
            probe.assign([tp])
            self._probes[partition] = probe
        return int((await probe.end_offsets([tp]))[tp])

    async def _close_probe(self, partition: int) -> None:
        probe = self._probes.pop(partition, None)
        if probe is not None:
            await probe.stop()

    async def close(self) -> None:
        """Stop the consumers kept for suspect partitions."""
        for p in list(self._probes):
            await self._close_probe(p)

    async def read(
        self,
        state: PartitionState,
        start: int,
        end: int | None,
        *,
        to_snapshot: bool = False,
        seen: tuple[int, dict[int, bytes | None]] | None = None,
    ) -> int:
        """Read [start, end) of the source topic into the log at the client's raw speed.

        With end None, read to the end offset the broker reports at the start when
        `to_snapshot`, else until EMPTY_POLLS polls in a row come back empty. Returns the
        next offset to read. Up to a committed offset, whoever processed those offsets first
        sent their dead letters; to the end (no committed offset), nobody did, so this does,
        and each group commit waits for their delivery as the agent's does. With `seen`
        (offset, dict), the value of the record at that offset is put in the dict.
        """
        p = state.partition
        tp = TopicPartition(self.topic, p)
        consumer = self._consumer()
        dlq: AIOKafkaProducer | None = None
        if end is None:  # nobody sent the dead letters of these offsets yet
            dlq = await clients.start_producer(self.bootstrap, "dlq")
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
            if end is None and to_snapshot:
                end = (await consumer.end_offsets([tp]))[tp]
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
                    if end is not None and await consumer.position(tp) >= end:
                        position = end  # the offsets left were no records (control batches)
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
                    if seen is not None and rec.offset == seen[0]:
                        seen[1][rec.offset] = rec.value
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
