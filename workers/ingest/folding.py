"""When the worker folds session summaries: a lot while it is idle, a slice a second otherwise.

The fold itself (durable log frames -> SessionSummary, one RocksDB batch with its
cursor) is `workers/analytics/store.py`; this module only paces it so that ingest
keeps its throughput (`bench/bench_aggregates.py`). Idle is worker-wide (no
message on any partition for `IngestConfig.fold_idle_after_s`): Faust feeds one
partition at a time, so a partition that looks idle may be waiting its turn, and
folding it then would slow the one being fed.

A frame's cost varies: a fold writes each summary it changed, so frames of many sessions
(one event per message) cost a summary write each, frames of one session's batch share
one. So the pacing is bounded in time too: a busy fold takes at most
`IngestConfig.fold_busy_share` of the time, and an idle tick folds only as many frames as
fit in `IngestConfig.fold_idle_tick_s` at the last fold's cost per frame (a long tick
would hold up the loop when messages come again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from workers.ingest.config import IngestConfig
from workers.ingest.partition import PartitionState

log = logging.getLogger(__name__)
#: hands one summary (session id, JSON) to the producer; returns its delivery, done when the
#: broker acked it
Publish = Callable[[str, bytes], Awaitable[Awaitable[Any]]]


class Folder:
    """The fold pacing of one worker; `step` runs on the flusher's tick.

    With `publish` (the worker's send to the compacted ``kaizen.sessions``, key =
    session id), every summary a fold changed is published after it, and marked
    published only once the broker acked it (workers/analytics/store.py).
    """

    def __init__(self, config: IngestConfig, publish: Publish | None = None) -> None:
        self.config = config
        self.publish = publish
        self._seen = -1  # messages processed as of `_since`
        self._since = 0.0
        self._last = 0.0
        self._busy_wait = config.fold_busy_every_s  # between busy folds (grows with their cost)
        self._frame_s = 0.0  # seconds the last fold took per frame

    async def step(self, states: Iterable[PartitionState], now: float) -> int:
        """Fold what this tick may, then publish what changed; the frames folded."""
        cfg = self.config
        ready = [s for s in states if s.ready.is_set() and not s.closed]
        messages = sum(s.counters.messages for s in ready)
        if messages != self._seen:
            self._seen, self._since = messages, now
        idle = now - self._since >= cfg.fold_idle_after_s
        if not idle and now - self._last < self._busy_wait:
            return 0
        self._last = now
        budget = cfg.fold_idle_frames if idle else cfg.fold_busy_frames
        if idle and self._frame_s > 0:
            # one tick's fold blocks the loop: keep it short when frames are dear (a
            # frame costs a summary write when each message holds one session's event)
            budget = max(1, min(budget, int(cfg.fold_idle_tick_s / self._frame_s)))
        done = 0
        started = time.perf_counter()
        for state in ready:
            if done >= budget:
                break
            if not state.lock.locked() and not state.committing:
                done += state.fold_summaries(budget - done)
        took = time.perf_counter() - started
        if done:
            self._frame_s = took / done
        if not idle:
            # during a burst the fold takes at most `fold_busy_share` of the time, whatever
            # a frame costs: the summaries lag further and catch up when the worker idles
            self._busy_wait = max(cfg.fold_busy_every_s, took / cfg.fold_busy_share)
        if self.publish is not None:
            for state in ready:
                await self._publish(state)
        return done

    async def _publish(self, state: PartitionState) -> None:
        store = state.summaries
        if store is None or state.closed:
            return
        pending = store.unpublished()
        if not pending:
            return
        assert self.publish is not None
        try:
            # all handed to the producer first, then their acks awaited together: one
            # produce request carries many summaries (awaiting each ack in turn made a
            # request per summary, and a fold touches a session per event when every
            # message holds one event)
            deliveries = [await self.publish(sid, data) for sid, data in pending]
            await asyncio.gather(*deliveries)
        except Exception as exc:  # the broker may be away: the marks stay, retried next tick
            log.warning("partition %d: publishing summaries failed: %s", state.partition, exc)
            return
        if not state.closed:
            store.mark_published([sid for sid, _ in pending])
