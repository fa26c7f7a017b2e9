"""IngestConfig: the tuning of the ingest path (group commit, segments, catch-up, retention).

Pure data.  The defaults suit one worker process per machine; ``create_app(settings,
ingest_config=...)`` overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.hotlog import RetentionPolicy
from workers.ingest.decode import DEFAULT_MAX_EVENT_BYTES


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
