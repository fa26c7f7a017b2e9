"""The hot log: a crash-safe segmented append log of Avro frames with CRC-32C trailers.

One :class:`PartitionLog` per topic-partition directory ``<data>/hotlog/<topic>-<partition>/``.
Modules: ``frame`` (pure frame format and resync), ``segment`` (one segment file),
``checkpoint`` (the durable recovery checkpoint), ``log`` (rolling, retention, group commit),
``verify`` (offline checking and repair), ``policy`` (value types, the commit policy),
``layout`` (naming and listing partition directories: the one owner of that naming).
"""

from workers.hotlog.frame import CorruptFrame
from workers.hotlog.log import LogClosed, LogFailed, LogLocked, PartitionLog
from workers.hotlog.policy import (
    BadRange,
    CommitPolicy,
    Entry,
    Location,
    RecoveryReport,
    RetentionPolicy,
    SegmentInfo,
)

__all__ = [
    "BadRange",
    "CommitPolicy",
    "CorruptFrame",
    "Entry",
    "Location",
    "LogClosed",
    "LogFailed",
    "LogLocked",
    "PartitionLog",
    "RecoveryReport",
    "RetentionPolicy",
    "SegmentInfo",
]
