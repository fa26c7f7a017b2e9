"""The background flusher: group commits on time (the live feed commits on size), stats, retention,
and the pacing of session summary folds (workers/ingest/folding.py).

One loop per worker over every owned partition, every ``IngestConfig.tick_s``.

Invariants: it touches a partition only while it is ready and not closed, and only under
``state.lock`` (the feed's lock), so a group commit never races the feed's; retention
drops a segment's index entries before the segment (``PartitionState.enforce_retention``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from workers.ingest.config import IngestConfig
from workers.ingest.folding import Folder, Publish
from workers.ingest.partition import PartitionState


async def run(
    config: IngestConfig,
    states: Callable[[], Iterable[PartitionState]],
    update_lag: Callable[[PartitionState], None],
    stopping: Callable[[], bool],
    publish: Publish | None = None,
) -> None:
    """Loop until ``stopping()``: timed flushes, stats every ``stats_every_s``, retention."""
    last_stats = last_retention = time.monotonic()
    folder = Folder(config, publish) if config.aggregates else None
    while not stopping():
        await asyncio.sleep(config.tick_s)
        now = time.monotonic()
        for state in list(states()):
            if state.closed or not state.ready.is_set():
                continue
            if state.want_flush(now) and not state.lock.locked():
                async with state.lock:
                    if not state.closed:
                        await state.flush(wait=False)
        if folder is not None:
            await folder.step(states(), now)
        if now - last_stats >= config.stats_every_s:
            last_stats = now
            for state in list(states()):
                if state.opened and not state.closed:
                    update_lag(state)
                    state.save_stats()
        if config.retention.max_age_s is None and config.retention.max_bytes is None:
            continue
        if now - last_retention >= config.retention_every_s:
            last_retention = now
            for state in list(states()):
                if state.ready.is_set() and not state.closed:
                    async with state.lock:
                        await state.enforce_retention()
