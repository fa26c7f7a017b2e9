"""The live feed: reads ``kaizen.events`` for the ready partitions this worker owns into their
hot logs, and commits their durable offsets to the consumer group.

Faust keeps what it is good at, the consumer group: membership, the co-partitioning assignor,
static membership and the rebalance callbacks. It does not carry the events: its per-message
pipeline (a Message, an Event, a channel queue, a stream step per message) costs more than
ingesting a one-event message does (docs/ARCHITECTURE.md, "The live feed"). One raw aiokafka
consumer in assign mode (no group) reads every ready partition here at the client's speed,
as the catch-up does; the worker's Faust consumer is subscribed to the topic for the group
but never fetches it (`GroupMember.pause_fetching`, at every assignment), and Faust never
commits its offsets (the topic has acks off in Faust): this feed does, through the member.

Invariants:

* a partition is read only while it is ours and ready: `add` once the catch-up is done,
  `remove` before the partition manager closes or rechecks it; each record is processed
  under ``state.lock``, only while the state is still the one being fed, ready and open, so
  nothing reaches a state being closed or caught up;
* each partition is read in offset order from ``state.next_offset`` and its position never
  moves back: the consumer resets no offset by itself (``auto_offset_reset="none"``). An
  offset out of range (the log truncated, the broker restarted empty) or another topic or
  cluster id than the epoch's (`check_incarnation`, every every
  ``IngestConfig.incarnation_every_s``: a topic deleted and made again may already hold more
  records than the old position, so no fetch error tells it) sends the partition back to
  the catch-up (``PartitionManager.recheck``), which settles the epoch and reads the new
  incarnation before the partition is fed again; the records fetched before are dropped
  with the old assignment, so none of the old incarnation is numbered in a new epoch;
* the offset committed to the group is the partition's durable next offset (its watermark,
  `PartitionState.next_kafka_offset`), never past what is fsynced and indexed, and only
  forward once the partition is fed (the catch-up read up to the group's offset first); a
  revoke commits before the partition goes (``PartitionManager.on_partitions_revoked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from workers.broker.cluster import Incarnation, incarnation_of
from workers.ingest import epoch as epochs
from workers.ingest.config import IngestConfig
from workers.ingest.partition import PartitionState, SendDeadLetter, take
from workers.kafka import clients

log = logging.getLogger(__name__)


class GroupMember(Protocol):
    """The worker's member of the consumer group (Faust's consumer, `workers.ingest.agent`)."""

    async def commit(self, offsets: Mapping[int, int]) -> bool:
        """Commit these next offsets of the events topic's partitions for the group."""
        ...

    async def pause_fetching(self, partitions: Iterable[int]) -> None:
        """Keep the member from fetching these partitions (the feed reads them)."""
        ...


class LiveFeed:
    """One consumer reading the ready partitions of the events topic this worker owns."""

    def __init__(
        self,
        bootstrap: clients.Target,
        topic: str,
        config: IngestConfig,
        *,
        recheck: Callable[[PartitionState, str], None],
        stops_for: Callable[[BaseException], bool],
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.config = config
        #: hands a dead letter to a producer (Faust's: set by `workers.ingest.agent`)
        self.send_dead_letter: SendDeadLetter | None = None
        #: hands a partition back to the catch-up (the manager's): reason in the log line
        self.recheck = recheck
        self.stops_for = stops_for
        #: the worker's member of the group (set by `workers.ingest.agent`)
        self.member: GroupMember | None = None
        self._fed: dict[int, PartitionState] = {}
        self._changed = True
        self._wake = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        #: the next offset last committed to the group, per partition fed
        self._committed: dict[int, int] = {}
        self._commit_lock = asyncio.Lock()
        self._stopping = False

    # ------------------------------------------------------------------ what is fed

    def add(self, state: PartitionState) -> None:
        """Feed this ready partition from ``state.next_offset`` on."""
        assert state.next_offset is not None, "a partition is fed once caught up"
        self._fed[state.partition] = state
        # committed once at least, whatever the group holds: the catch-up read to the
        # group's offset (or, with none or a bogus one, to the end), never below it
        self._committed[state.partition] = -1
        self._changed = True
        self._wake.set()

    def remove(self, partition: int) -> None:
        """Feed it no more (its records already fetched are dropped)."""
        if self._fed.pop(partition, None) is not None:
            self._committed.pop(partition, None)
            self._changed = True

    def fed(self, partition: int) -> bool:
        return partition in self._fed

    def highwater(self, partition: int) -> int | None:
        """The partition's high watermark as the last fetch reported it (None: not fed)."""
        consumer = self._consumer
        if consumer is None or partition not in self._fed:
            return None
        with contextlib.suppress(Exception):
            hw = consumer.highwater(TopicPartition(self.topic, partition))
            return None if hw is None else int(hw)
        return None

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Read and ingest until `stop`; offsets committed every ``group_commit_every_s``."""
        cfg = self.config
        consumer = self._consumer = clients.new_consumer(
            self.bootstrap,
            role="ingest",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            fetch_max_bytes=cfg.catchup_fetch_bytes,
            max_partition_fetch_bytes=cfg.live_fetch_bytes,
        )
        await consumer.start()
        committer = asyncio.ensure_future(self._commit_loop())
        checker = asyncio.ensure_future(self._incarnation_loop())
        try:
            while not self._stopping:
                if self._changed:
                    self._assign(consumer)
                if not self._fed:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                    continue
                try:
                    got = await consumer.getmany(
                        timeout_ms=cfg.live_poll_ms, max_records=cfg.live_max_records
                    )
                except OffsetOutOfRangeError as exc:
                    self._out_of_range(exc)
                    continue
                for tp, records in got.items():
                    state = self._fed.get(tp.partition)
                    if state is not None and records:
                        await self._ingest(state, records)
        finally:
            for task in (committer, checker):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            self._consumer = None
            await consumer.stop()

    def _assign(self, consumer: AIOKafkaConsumer) -> None:
        """Assign what is fed, each at the next offset its state expects (assigning anew
        resets every position, and drops what was fetched for the partitions that went)."""
        self._changed = False
        tps = {TopicPartition(self.topic, p): s for p, s in self._fed.items()}
        consumer.assign(list(tps))
        for tp, state in tps.items():
            assert state.next_offset is not None
            consumer.seek(tp, state.next_offset)

    async def _ingest(self, state: PartitionState, records: list[Any]) -> None:
        try:
            async with state.lock:
                if self._fed.get(state.partition) is not state:
                    return  # removed while its records were fetched
                if state.closed or not state.ready.is_set():
                    self._changed = True  # read these again from its next offset, if fed on
                    return
                send = self.send_dead_letter
                assert send is not None, "no dead-letter producer set"
                for record in records:
                    await take(state, record, send)
                    if state.want_flush():
                        await state.flush(wait=False)
        except Exception as exc:
            # Bad input never raises (it is dead-lettered): this is I/O trouble or a bug.
            # Feeding on would skip this partition's records (they are not re-read), so stop
            # the worker: a restart resumes from the committed offset.
            self._stopping = True
            if self.stops_for(exc):
                return  # a missing ACL: the worker stops cleanly (exit 1)
            log.exception("ingest of partition %d failed", state.partition)
            raise

    def _out_of_range(self, exc: OffsetOutOfRangeError) -> None:
        offsets: Mapping[TopicPartition, int] = exc.args[0] if exc.args else {}
        for tp, offset in offsets.items():
            state = self._fed.get(tp.partition)
            if state is not None:
                self.remove(tp.partition)
                self.recheck(state, f"offset {offset} is out of range on the broker")

    # ------------------------------------------------------------------ group offsets

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.group_commit_every_s)
            try:
                await self.commit_offsets()
            except KafkaError as exc:  # the next round tries again
                log.info("committing the group's offsets failed (%s); retrying", exc)

    async def commit_offsets(self, partitions: Iterable[int] | None = None) -> None:
        """Commit the durable next offset of the fed partitions (or of `partitions`) that
        moved since their last commit."""
        member = self.member
        if member is None:
            return
        async with self._commit_lock:
            due: dict[int, int] = {}
            for p in self._fed if partitions is None else partitions:
                state = self._fed.get(p)
                if state is None or not state.opened or state.closed:
                    continue
                offset = state.next_kafka_offset
                if offset > self._committed.get(p, offset):
                    due[p] = offset
            if due and await member.commit(due):
                for p, offset in due.items():
                    if p in self._committed:
                        self._committed[p] = offset

    # ------------------------------------------------------------------ incarnations

    async def _incarnation_loop(self) -> None:
        admin = clients.new_admin(self.bootstrap, role="ingest", request_timeout_ms=10000)
        try:
            while True:
                await asyncio.sleep(self.config.incarnation_every_s)
                if not self._fed:
                    continue
                try:
                    await admin.start()  # connects once (a no-op once started)
                    now = await incarnation_of(admin, self.topic)
                except (KafkaError, OSError) as exc:  # the broker away: ask again next time
                    log.debug("incarnation check failed: %s", exc)
                    continue
                self.check_incarnation(now)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    def check_incarnation(self, now: Incarnation) -> list[int]:
        """Send back to the catch-up every fed partition whose epoch numbers another
        incarnation than `now`; which ones."""
        moved = []
        for p, state in list(self._fed.items()):
            # the ids alone: no end offset, and the group's offsets are not in question
            reason = epochs.went_back(
                state.epoch, now, end=None, next_offset=state.next_kafka_offset, group_forgot=False
            )
            if reason is not None:
                moved.append(p)
                self.remove(p)
                self.recheck(state, reason)
        return moved

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
