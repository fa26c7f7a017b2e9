"""IngestConfig: the tuning of the ingest path (group commit, segments, catch-up, retention).

Pure data.  The defaults suit one worker process per machine; ``create_app(settings,
ingest_config=...)`` overrides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from workers.hotlog import CommitPolicy, RetentionPolicy
from workers.ingest.decode import DEFAULT_MAX_EVENT_BYTES

INGEST_COMMIT = CommitPolicy(
    max_bytes=16 << 20, max_records=50_000, max_ms=50.0, max_messages=4_000
)


@dataclass(frozen=True)
class IngestConfig:
    """Tuning of the ingest path; the defaults suit one worker process per machine."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    segment_bytes: int = 64 << 20
    #: group commit (fsync, index batch, acks) once any bound is reached; records = events
    commit: CommitPolicy = INGEST_COMMIT
    #: catch-up reads
    catchup_fetch_bytes: int = 32 << 20
    catchup_stall_s: float = 60.0
    #: message bytes held per partition while it catches up (beyond: ingest waits for it)
    held_max_bytes: int = 64 << 20
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_every_s: float = 60.0
    stats_every_s: float = 1.0
    tick_s: float = 0.005
    #: session summaries (workers/analytics/store.py), folded from the durable log
    #: (workers/ingest/folding.py): up to `fold_idle_frames` a tick (as many as fit in
    #: `fold_idle_tick_s` at the last fold's cost per frame) once no message came for
    #: `fold_idle_after_s`, else `fold_busy_frames` every `fold_busy_every_s`, or less often
    #: so that busy folds take at most `fold_busy_share` of the time
    aggregates: bool = field(default_factory=lambda: os.environ.get("KAIZEN_AGGREGATES") != "0")
    fold_idle_frames: int = 2_000
    fold_idle_after_s: float = 0.2
    fold_busy_frames: int = 256
    fold_busy_every_s: float = 1.0
    fold_busy_share: float = 0.05
    fold_idle_tick_s: float = 0.05
