"""PartitionManager: the partitions of ``kaizen.events`` this worker owns, and their handoff.

A mode.Service living as long as the worker.  On Faust's assignment it opens a
:class:`~workers.ingest.partition.PartitionState` per new partition and hands it to the
catch-up (:mod:`workers.ingest.catchup`) in a task of its own, so one partition's catch-up
holds up neither the others' ingest nor a rebalance; the messages the ingest agent receives
for it meanwhile are held (``hold``) and processed in order when it is done.  On revocation
it flushes, and when a partition goes elsewhere it closes its state.  It runs the flusher
(:mod:`workers.ingest.flusher`) and answers replay's questions (``get``, ``owned``,
``wait_ready``, ``partition_for``; :class:`workers.replay.interfaces.ManagerLike`).

Invariants: at most one state per partition; a held message is never dropped while the
partition is ours (once revoked it was never acked, so its next owner reads it); a state
being replaced is closed before its successor opens the same files (the hot log's ``LOCK``
would refuse it otherwise); the states of newly assigned partitions exist before
``on_partitions_assigned`` first awaits anything (Faust resumes fetching while its receivers
still run, and the agent drops, unacked, a message of a partition without a state: its
commits would stall); a failed handoff crashes the worker (a restart resumes from the
committed offset) rather than serve a partition that is behind.
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
        self.catchup = CatchUp(settings.kafka, topic, group_id, self.config)
        #: set by the app: sends one session summary to kaizen.sessions (key, value)
        self.publish_summary: Publish | None = None
        #: set by the ingest agent: processes one held message of a ready partition
        self.process_held: Callable[[PartitionState, Any], Awaitable[None]] | None = None
        #: set by `kaizen-stream worker`: True when it stops cleanly for this error (a
        #: missing ACL, which no restart of a task can fix) instead of crashing
        self.stops_for: Callable[[BaseException], bool] = lambda exc: False
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
        gone = sorted(p for p in self._states if p not in mine)
        kept = sorted(p for p in self._states if p in mine)
        new = sorted(mine - self._states.keys())
        # one line per rebalance this worker takes part in: how operators (and the static
        # membership test) see that a restart within the session timeout caused none
        log.info(
            "assignment: partitions %s of %s (new %s, gone %s)", sorted(mine), self.topic, new, gone
        )
        # new states first, before anything awaited here: Faust resumes fetching while this
        # runs, and the agent drops a message of a partition without a state
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
        # A kept partition may have been another member's meanwhile (this worker stalled
        # past its session timeout and was never told): Faust now resumes it from the
        # group's committed offset, past what this log holds. Not ready until checked.
        for p in kept:
            state = self._states[p]
            if state.ready.is_set() and not state.closed:
                state.ready.clear()
                self._handoffs[p] = asyncio.ensure_future(self._handoff(state, kept=True))
        for p in gone:
            await self._close_partition(p)

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

    def hold(self, state: PartitionState, event: Any) -> bool:
        """Keep a message of a partition that is catching up until `_release_held`.

        False, holding nothing, once the partition holds `IngestConfig.held_max_bytes`: then
        the agent waits for the catch-up. That bound is reached only when Faust reads far
        behind the catch-up: a group with no committed offset, where both read the topic
        from its start. (Pausing the partition's fetch in Faust instead stalled the group's
        commits of the partition in the tests: its offsets were never all delivered.)
        """
        size = len(event.message.value or b"")
        if state.held and state.held_bytes + size > self.config.held_max_bytes:
            return False
        state.held.append(event)
        state.held_bytes += size
        return True

    async def _release_held(self, state: PartitionState) -> None:
        """Process the held messages in order, then mark the partition ready.

        ``ready`` is set with no await after the last held message was taken, so a
        message the agent receives later is never processed before one held earlier.
        """
        while state.held:
            held, state.held, state.held_bytes = state.held, [], 0
            assert self.process_held is not None, "held messages without an ingest agent"
            for event in held:
                await self.process_held(state, event)
        state.ready.set()

    async def _handoff(self, state: PartitionState, kept: bool = False) -> None:
        """Catch the partition up in the background: the other partitions keep flowing."""
        try:
            if kept:
                async with state.lock:
                    await self.catchup.rejoin(state)
            else:
                await self.catchup.handoff(state)
            await self._release_held(state)
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

    async def _publish(self, session_id: str, data: bytes) -> Awaitable[Any]:
        assert self.publish_summary is not None
        return await self.publish_summary(session_id, data)

    def _update_lag(self, state: PartitionState) -> None:
        if self.highwater is None or state.next_offset is None:
            return
        with contextlib.suppress(Exception):
            hw = self.highwater(state.partition)
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
        for p in list(self._states):
            await self._close_partition(p)
        await self.catchup.close()
