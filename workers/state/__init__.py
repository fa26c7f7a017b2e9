"""Per-partition offset tables in RocksDB (rocksdict), beside each partition's hot log.

``<data>/hotlog/<topic>-<partition>/index/`` holds, per partition: session -> SessionInfo,
(session_id, producer, seq) -> Location of the frame in the hot log, and the partition
watermark (the last Kafka offset durably in the log), always written in the same WriteBatch
as the entries it covers.  Modules: ``keys`` (pure key layout), ``records`` (SessionInfo and
its encoding), ``options`` (RocksDB options), ``store`` (PartitionStore, the one writer of
the index), ``transaction`` (IndexBatch: one group commit, buffered; the dedupe decision),
``rebuild`` (rebuilding the index from the log, checking they agree).

Invariant 4 of the architecture: the index never points past durable data (the caller
commits an IndexBatch only after the log's fsync), and it is rebuilt from the log when they
disagree (:func:`workers.state.rebuild.index_matches_log`, ``rebuild_partition``).
"""

from workers.state.options import StoreOptions
from workers.state.records import SessionInfo
from workers.state.store import FormatMismatch, PartitionStore, ReadOnlyStore
from workers.state.transaction import BatchClosed, IndexBatch

__all__ = [
    "BatchClosed",
    "FormatMismatch",
    "IndexBatch",
    "PartitionStore",
    "ReadOnlyStore",
    "SessionInfo",
    "StoreOptions",
]
