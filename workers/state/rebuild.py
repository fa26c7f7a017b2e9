"""Rebuilding a partition's index from its hot log, and checking that the two agree.

Invariant 4: the index never points past durable data, and it is rebuilt from the log when
they disagree.  The ingest calls :func:`index_matches_log` when it opens a partition and
:func:`rebuild_partition` when that answers False (or the index is unreadable, e.g.
:class:`~workers.state.store.FormatMismatch`).

Rebuild: the new index is built in ``index.rebuild/`` from every good frame of
``log.entries()``, then swapped in by renames
(``index`` -> ``index.old``, ``index.rebuild`` -> ``index``, fsync the directory, remove
``index.old``).  A crash at any point leaves either the old index (checked and rebuilt again
on the next open) or no index (empty index, non-empty log: disagrees, rebuilt again); never a
half-built one under ``index``.  Within the log the first frame of a (session_id, producer,
seq) wins: a later copy can only be a redelivery appended after the index lost its tail.

Watermark after a rebuild.  It must never be above an offset whose records are not all in
the log, or those records would be skipped (loss); being too low only costs re-consuming
records that the (session_id, producer, seq) dedupe then drops.  Frames of one Kafka message are
appended in one write into one segment, in offset order, so after torn-tail recovery every
message below the greatest offset ``M`` present in the log is complete, while message ``M``
itself may have lost trailing events.  Hence the watermark is ``M - 1`` (every frame
carries its Kafka offset), so message ``M`` is re-consumed and its missing events appended;
for an empty log it is -1.

Frames are read by the ingest's lean event reader (`workers.codec.lean`), so the rebuild
indexes what the ingest would have.  A frame it rejects (a key over `MAX_KEY_BYTES` appended
by an older version, say) is reported with its location and skipped; a rebuild never stops
on one.

Offsets whose records went to the dead-letter topic or were dropped as duplicates leave no
frame; re-consuming them is the same dedupe-protected work (a dead-letter record may be
dead-lettered again).

:func:`catch_up` is the cheap alternative when the index merely lags the log (the process
died between the log's fsync and the index commit): it indexes the frames after the
greatest indexed location.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from workers.durable import fsync_dir
from workers.hotlog import CorruptFrame, Entry, Location, PartitionLog
from workers.settings import EVENTS_TOPIC
from workers.state.options import DEFAULT_OPTIONS, StoreOptions
from workers.state.store import INDEX_DIR, PartitionStore

log = logging.getLogger(__name__)

REBUILD_DIR = "index.rebuild"
OLD_DIR = "index.old"
REBUILD_BATCH = 50_000  # entries per WriteBatch while rebuilding


class LogSource(Protocol):
    """What the index needs of a :class:`PartitionLog`."""

    def entries(self, start: Location | None = None) -> Iterator[Entry]: ...

    def scan(self, start: Location | None = None) -> Iterator[tuple[Location, bytes]]: ...

    def read(self, loc: Location) -> bytes: ...


def _reader() -> Callable[[bytes], tuple[str, int, int, str, str | None, str]]:
    """The index fields of a frame's payload, read by the ingest's own lean decoder (so the
    rebuild indexes exactly what the ingest would); DecodeError for a frame it rejects."""
    # Imported here: the decoder (and fastavro) is not needed to open a store.
    from workers.codec.lean import EventReader
    from workers.hotlog.frame import MAX_PAYLOAD

    event = EventReader(max_event_bytes=MAX_PAYLOAD).event

    def fields(payload: bytes) -> tuple[str, int, int, str, str | None, str]:
        d = event(payload)
        return d.session_id, d.seq, d.ts_ms, d.agent, d.model, d.producer

    return fields


def _index_frames(
    store: PartitionStore,
    frames: Iterable[Entry],
    skip_first: Location | None = None,
) -> tuple[int, int | None]:
    """Index frames not yet indexed; return (frames indexed, greatest offset met or None)."""
    from workers.codec.errors import DecodeError

    fields = _reader()
    batch = store.begin()
    indexed = skipped = 0
    max_offset: int | None = None
    try:
        for entry in frames:
            loc, offset, payload = entry.location, entry.offset, entry.payload
            if skip_first is not None:
                if loc == skip_first:
                    skip_first = None
                    continue
                skip_first = None
            if max_offset is None or offset > max_offset:
                max_offset = offset
            try:
                sid, seq, ts_ms, agent, model, producer = fields(payload)
            except DecodeError as exc:
                # a frame the index cannot hold (e.g. a key over the limit, appended by an
                # older version): report it and index the rest
                skipped += 1
                log.warning("index rebuild: frame at %s not indexed: %s", loc, exc)
                continue
            if not batch.is_new(sid, seq, producer):
                continue
            batch.add(sid, seq, loc, ts_ms, agent, model, producer)
            indexed += 1
            if len(batch) >= REBUILD_BATCH:
                batch.commit(-1)  # the watermark is set once, at the end
                batch = store.begin()
        batch.commit(-1)
    finally:
        if not batch.closed:
            batch.abort()
    if skipped:
        log.warning("index rebuild: %d frames could not be indexed (see above)", skipped)
    return indexed, max_offset


def rebuild_partition(
    directory: Path,
    partition: int,
    log: PartitionLog | None = None,
    *,
    options: StoreOptions = DEFAULT_OPTIONS,
) -> PartitionStore:
    """Drop the index of ``directory`` and rebuild it from the log; return it open.

    The caller must have closed its PartitionStore of ``directory``.  Without ``log`` the
    log is opened (and closed again) here.
    """
    directory = Path(directory)
    if log is None:
        with PartitionLog.open(directory, topic=EVENTS_TOPIC, partition=partition) as own:
            return _rebuild(directory, partition, own, options)
    return _rebuild(directory, partition, log, options)


def _rebuild(
    directory: Path, partition: int, log_: LogSource, options: StoreOptions
) -> PartitionStore:
    tmp = directory / REBUILD_DIR
    if tmp.exists():
        shutil.rmtree(tmp)  # a crashed rebuild
    store = PartitionStore.open_path(tmp, partition, options)
    try:
        indexed, max_offset = _index_frames(store, log_.entries())
        watermark = -1 if max_offset is None else max_offset - 1
        store.begin().commit(watermark)
    finally:
        store.close()
    index, old = directory / INDEX_DIR, directory / OLD_DIR
    if old.exists():
        shutil.rmtree(old)
    if index.exists():
        index.rename(old)
    tmp.rename(index)
    fsync_dir(directory)
    if old.exists():
        shutil.rmtree(old)
    log.info("index of %s rebuilt: %d entries, watermark %d", directory.name, indexed, watermark)
    return PartitionStore.open(directory, partition, options)


def catch_up(store: PartitionStore, log_: LogSource) -> int:
    """Index the log's frames after the greatest indexed location; return how many.

    For an index that merely lags the log.  The watermark moves to (greatest offset among
    those frames) - 1 (see the module docstring), never backwards.
    """
    start = store.max_location
    indexed, max_offset = _index_frames(store, log_.entries(start), skip_first=start)
    if max_offset is not None:
        store.begin().commit(max_offset - 1)
    return indexed


def _reads_back(log_: LogSource, loc: Location) -> bool:
    try:
        log_.read(loc)
    except (CorruptFrame, OSError, ValueError):
        return False
    return True


def index_matches_log(store: PartitionStore, log_: LogSource) -> bool:
    """Cheap check on open: does every pointer of the index reach a good frame?

    False when: the index is empty while the log has a frame; the greatest indexed location
    or any SessionInfo's ``last`` does not read back (missing segment, past the end, bad
    CRC).  An index that lags the log (frames after its greatest location) agrees: those
    records are re-consumed from the watermark, or indexed by :func:`catch_up`.
    """
    top = store.max_location
    if top is None:
        return next(iter(log_.scan()), None) is None
    if not _reads_back(log_, top):
        return False
    return all(_reads_back(log_, info.last) for info in store.sessions())
