"""PartitionManager: the partitions of ``kaizen.events`` this worker owns, and their handoff.

A mode.Service living as long as the worker.  On Faust's assignment it opens a
:class:`~workers.ingest.partition.PartitionState` per new partition and hands it to the
catch-up (:mod:`workers.ingest.catchup`) in a task of its own, so one partition's catch-up
holds up neither the others' ingest nor a rebalance; once caught up the partition is ready
and the live feed (:mod:`workers.ingest.feed`) reads it on from there.  On revocation it
stops feeding, flushes and commits; when a partition goes elsewhere it closes its state.
It runs the flusher (:mod:`workers.ingest.flusher`) and the feed, and answers replay's
questions (``get``, ``owned``, ``wait_ready``, ``partition_for``;
:class:`workers.replay.interfaces.ManagerLike`).

Invariants: at most one state per partition; a partition is fed only while it is ready,
and it is ready only once its catch-up (or a recheck: offsets that went back, another
incarnation) is done; a state being replaced is closed before its successor opens the
same files (the hot log's ``LOCK`` would refuse it otherwise); the states of newly
assigned partitions exist before ``on_partitions_assigned`` first awaits anything (replay
asks for them at once); the worker's Faust consumer never fetches the events topic (its
partitions are paused at every assignment, within the rebalance callback, before Faust
resumes fetching); a failed handoff crashes
the worker (a restart resumes from the committed offset) rather than serve a partition
that is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.partitioner import murmur2
from mode import Service

from workers.hotlog import layout
from workers.ingest import flusher, metrics, testpoint
from workers.ingest.catchup import CatchUp
from workers.ingest.config import IngestConfig
from workers.ingest.decode import LeanDecoder
from workers.ingest.feed import LiveFeed
from workers.ingest.folding import Publish
from workers.ingest.partition import PartitionState
from workers.settings import EVENTS_TOPIC, Settings

log = logging.getLogger(__name__)


def partition_for_key(key: bytes, partitions: int) -> int:
    """aiokafka's (and the Java client's) default partitioner: murmur2 of the key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionManager(Service):
    """The partitions of ``kaizen.events`` this worker owns; lives as long as the worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str = EVENTS_TOPIC,
        group_id: str | None = None,
        config: IngestConfig | None = None,
        **kwargs: Any,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.group_id = group_id
        self.config = config or IngestConfig()
        self.decoder = LeanDecoder(self.config.max_event_bytes)
        self._states: dict[int, PartitionState] = {}
        self._handoffs: dict[int, asyncio.Task[None]] = {}
        self._assigned: set[int] = set()
        self.catchup = CatchUp(settings.kafka, topic, group_id, self.config)
        #: set by the app: sends one session summary to kaizen.sessions (key, value)
        self.publish_summary: Publish | None = None
        #: set by `kaizen-stream worker`: True when it stops cleanly for this error (a
        #: missing ACL, which no restart of a task can fix) instead of crashing
        self.stops_for: Callable[[BaseException], bool] = lambda exc: False
        self.feed = LiveFeed(
            settings.kafka,
            topic,
            self.config,
            recheck=self.recheck,
            stops_for=lambda exc: self.stops_for(exc),
        )
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
        """Faust's full assignment: open new partitions (catch-up in a task), recheck kept
        ones, close gone ones."""
        mine = {tp.partition for tp in assigned if tp.topic == self.topic}
        self._assigned = mine
        gone = sorted(p for p in self._states if p not in mine)
        kept = sorted(p for p in self._states if p in mine)
        new = sorted(mine - self._states.keys())
        # one line per rebalance this worker takes part in: how operators (and the static
        # membership test) see that a restart within the session timeout caused none
        log.info(
            "assignment: partitions %s of %s (new %s, gone %s)", sorted(mine), self.topic, new, gone
        )
        for p in new:
            state = PartitionState(
                p,
                layout.partition_dir(self.settings.hotlog_dir, self.topic, p),
                topic=self.topic,
                decoder=self.decoder,
                config=self.config,
            )
            self._states[p] = state
            self._handoffs[p] = asyncio.ensure_future(self._handoff(state))
        if self.feed.member is not None and mine:
            await self.feed.member.pause_fetching(mine)  # the live feed reads them
        # A kept partition may have been another member's meanwhile (this worker stalled
        # past its session timeout and was never told): the group's committed offset may
        # be past what this log holds. Not fed again until checked.
        for p in kept:
            state = self._states[p]
            task = self._handoffs.get(p)
            if not state.closed and (task is None or task.done()):
                self.feed.remove(p)
                state.ready.clear()
                self._handoffs[p] = asyncio.ensure_future(self._handoff(state, kept=True))
        for p in gone:
            await self._close_partition(p)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Stop feeding the revoked partitions, flush them and commit their offsets (the
        next owner reads on from there)."""
        mine = sorted(tp.partition for tp in revoked if tp.topic == self.topic)
        for p in mine:
            state = self._states.get(p)
            if state is not None and state.ready.is_set() and not state.closed:
                state.ready.clear()  # the feed takes no more of it
                async with state.lock:
                    await state.flush()
        await self.feed.commit_offsets(mine)
        for p in mine:
            self.feed.remove(p)

    def recheck(self, state: PartitionState, reason: str) -> None:
        """The feed saw the partition's offsets go back, or another incarnation: not ready
        until the catch-up has settled its epoch and read what it lacks (then fed again)."""
        if state.closed or self._states.get(state.partition) is not state:
            return
        log.warning("partition %d: %s; checking it before ingesting on", state.partition, reason)
        state.ready.clear()
        task = self._handoffs.get(state.partition)
        if task is None or task.done():
            self._handoffs[state.partition] = asyncio.ensure_future(self._handoff(state, kept=True))

    async def _close_partition(self, p: int) -> None:
        await testpoint.slow(testpoint.CLOSE_SLOWLY)
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

    async def _handoff(self, state: PartitionState, kept: bool = False) -> None:
        """Catch the partition up in the background: the other partitions keep flowing."""
        try:
            if kept:
                async with state.lock:
                    await self.catchup.rejoin(state)
            else:
                await self.catchup.handoff(state)
            if state.closed:
                return
            state.ready.set()
            self.feed.add(state)
            log.info("partition %d: ready", state.partition)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.stops_for(exc):
                return
            log.exception("partition %d: handoff failed", state.partition)
            await self.crash(exc)

    # ------------------------------------------------------------------ background

    @Service.task
    async def _flusher(self) -> None:
        try:
            await flusher.run(
                self.config,
                lambda: list(self._states.values()),
                self._update_lag,
                lambda: self.should_stop,
                self._publish if self.publish_summary is not None else None,
            )
        except Exception as exc:
            # a group commit whose dead letters were refused: stop, or crash (mode's default)
            if not self.stops_for(exc):
                raise

    @Service.task
    async def _feeding(self) -> None:
        try:
            await self.feed.run()
        except Exception as exc:
            if not self.stops_for(exc):
                await self.crash(exc)

    async def drain(self) -> None:
        """Stop feeding, make everything durable and commit it to the group (a clean stop,
        while the group's member is still there)."""
        self.feed.stop()
        for state in list(self._states.values()):
            if state.ready.is_set() and not state.closed:
                async with state.lock:
                    with contextlib.suppress(Exception):  # e.g. a dead letter refused
                        await state.flush()
        with contextlib.suppress(Exception):
            await self.feed.commit_offsets()

    async def _publish(self, session_id: str, data: bytes) -> Awaitable[Any]:
        assert self.publish_summary is not None
        return await self.publish_summary(session_id, data)

    def _update_lag(self, state: PartitionState) -> None:
        if state.next_offset is None:
            return
        hw = self.feed.highwater(state.partition)
        if hw is not None:
            state.counters.lag = max(hw - state.next_offset, 0)

    def summary_counters(self) -> list[Any]:
        """The usage counters (workers/analytics/counters.py) of every open partition."""
        return [
            s.summaries.counters
            for s in self._states.values()
            if s.opened and not s.closed and s.summaries is not None
        ]

    def render_metrics(self) -> str:
        rows = []
        for p, state in sorted(self._states.items()):
            if state.opened and not state.closed:
                self._update_lag(state)
            rows.append((p, state.counters, state.ready.is_set()))
        return metrics.render(rows)

    async def on_stop(self) -> None:
        self.feed.stop()
        for p in list(self._states):
            await self._close_partition(p)
