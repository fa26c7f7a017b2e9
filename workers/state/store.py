"""PartitionStore: the RocksDB (rocksdict) index of one topic-partition's hot log.

Lives in ``<partition dir>/index/``; the key layout is in :mod:`workers.state.keys`.

The one writer of the index: every RocksDB write of a partition's index is made here
(:meth:`PartitionStore.write` for a group commit, :meth:`PartitionStore.remove_segments` for
retention, :meth:`PartitionStore.set_incarnation`); an :class:`IndexBatch` only buffers.

Invariants:

* the index only ever points at frames the hot log has fsynced: entries are written only by
  :meth:`PartitionStore.write` (through :meth:`IndexBatch.commit`), which the caller runs
  after the log's fsync; it writes every (session, producer, seq) -> Location, every touched
  session
  row, the counters and the watermark (last Kafka offset durably in the log, -1 for none)
  in ONE ``Rdict.write``: after a crash either all of them are in the index or none is;
* the watermark never moves backwards: a commit stores ``max(current, watermark)``;
* session rows change only through :func:`~workers.state.records.merge_row` (commits) and
  :func:`~workers.state.records.shrink_row` (retention);
* ``seen(s, q, p)`` is True iff (s, p, q) is durably indexed.  It costs no RocksDB read when
  ``q`` is above the session's ``last_seq`` (the greatest seq of any producer, kept in an
  in-memory cache filled lazily per session and updated after each commit); only
  ``q <= last_seq`` needs a point lookup (a second producer of a session, whose seqs start
  again from 0, pays one per event until it passes the first one's last seq); it
  answers True for a batch's entries only after the write succeeded (the cache is updated
  last);
* ``entries`` (and ``locations``) yield a session's entries by seq, then producer, by
  prefix iteration;
* ``remove_segments`` drops every entry pointing into the given segments in one synced
  WriteBatch (durable before the caller removes the files), fixing each touched
  SessionInfo (first, last, count; ``last_seq`` is kept);
* one writer (one batch written at a time); reads may run from any thread meanwhile.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import cast

from rocksdict import AccessType, Rdict, ReadOptions, WriteBatch

from workers.errors import StateError
from workers.hotlog import Location
from workers.state import keys
from workers.state.options import DEFAULT_OPTIONS, StoreOptions, rocksdb_options, write_options
from workers.state.records import (
    Row,
    SessionInfo,
    decode_info,
    decode_last_seq,
    merge_row,
    shrink_row,
)
from workers.state.transaction import IndexBatch, PendingSession

INDEX_DIR = "index"
_NONE = -(1 << 64)  # last_seq of a session with no entries: every seq is above it
_SYNCED = write_options(StoreOptions(sync=True))
_CACHE_LIMIT = 1 << 20  # sessions in the dedupe cache before it is dropped and refilled
_BIAS = keys.SEQ_BIAS
_pack_u64 = keys._U64.pack


class FormatMismatch(StateError, RuntimeError):
    """The index on disk was written with another key layout; rebuild it."""


class ReadOnlyStore(StateError, RuntimeError):
    """A write to a store opened with :meth:`PartitionStore.open_read_only`."""


def _range(db: Rdict, lower: bytes, upper: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for every key in ``[lower, upper)``, in key order (raw mode: bytes)."""
    ro = ReadOptions()
    ro.set_iterate_lower_bound(lower)
    ro.set_iterate_upper_bound(upper)
    return cast(Iterator[tuple[bytes, bytes]], db.items(from_key=lower, read_opt=ro))


class PartitionStore:
    """Offset tables of one partition.  Create with :meth:`open`."""

    def __init__(
        self, db: Rdict, path: Path, partition: int, opts: StoreOptions = DEFAULT_OPTIONS
    ) -> None:
        self._db = db
        self.path = path
        self.partition = partition
        self._write_opts = write_options(opts)
        self._last: dict[str, int] = {}
        self._closed = False
        self.read_only = False
        self._watermark = self._meta_i64(keys.WATERMARK_KEY, -1)
        self._entries = self._meta_u64(keys.ENTRIES_KEY)
        self._sessions = self._meta_u64(keys.SESSIONS_KEY)
        self._max_location: bytes = self._db.get(keys.MAX_LOCATION_KEY) or b""

    @classmethod
    def open(
        cls, directory: Path, partition: int, options: StoreOptions = DEFAULT_OPTIONS
    ) -> PartitionStore:
        """Open (creating if missing) the index in ``directory/index``.

        Raises :class:`FormatMismatch` for an index of another layout version.
        """
        return cls.open_path(Path(directory) / INDEX_DIR, partition, options)

    @classmethod
    def open_path(
        cls, path: Path, partition: int, options: StoreOptions = DEFAULT_OPTIONS
    ) -> PartitionStore:
        """Open (creating if missing) an index at exactly ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        return cls._checked(Rdict(str(path), rocksdb_options(options)), path, partition, options)

    @classmethod
    def open_read_only(cls, directory: Path, partition: int) -> PartitionStore:
        """Open the index in ``directory/index`` for reading only, for the command-line tools.

        Takes no RocksDB lock, so it works beside a worker that has the index open (it sees
        the index as of this open); writes raise :class:`ReadOnlyStore`.  Raises
        :class:`FormatMismatch` for an index of another layout version and FileNotFoundError
        when there is no index (creating nothing).
        """
        path = Path(directory) / INDEX_DIR
        if not path.is_dir():
            raise FileNotFoundError(f"no index in {directory}")
        opts = rocksdb_options(DEFAULT_OPTIONS)
        opts.create_if_missing(False)
        db = Rdict(str(path), opts, access_type=AccessType.read_only())
        return cls._checked(db, path, partition, DEFAULT_OPTIONS, read_only=True)

    @classmethod
    def _checked(
        cls,
        db: Rdict,
        path: Path,
        partition: int,
        options: StoreOptions,
        read_only: bool = False,
    ) -> PartitionStore:
        """The store over ``db`` once its format is known to be ours (stamped when new)."""
        try:
            fmt = db.get(keys.FORMAT_KEY)
            if fmt is None:
                if not read_only:
                    db.put(keys.FORMAT_KEY, keys.pack_u64(keys.FORMAT_VERSION))
            elif keys.unpack_u64(fmt) != keys.FORMAT_VERSION:
                raise FormatMismatch(f"{path}: index format {keys.unpack_u64(fmt)}")
            store = cls(db, path, partition, options)
            store.read_only = read_only
            return store
        except BaseException:
            db.close()
            raise

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(f"{self.path} is open read-only")

    # ------------------------------------------------------------------ metadata

    def _meta_i64(self, key: bytes, default: int) -> int:
        raw = self._db.get(key)
        return default if raw is None else keys.unpack_i64(raw)

    def _meta_u64(self, key: bytes) -> int:
        raw = self._db.get(key)
        return 0 if raw is None else keys.unpack_u64(raw)

    @property
    def watermark(self) -> int:
        """The last Kafka offset durably in the log and indexed; -1 when none."""
        return self._watermark

    @property
    def max_location(self) -> Location | None:
        """The greatest Location ever indexed (None for an empty index)."""
        return Location.unpack(self._max_location) if self._max_location else None

    @property
    def incarnation(self) -> str | None:
        """The broker incarnation (e.g. cluster id) the watermark refers to, if recorded."""
        raw = self._db.get(keys.INCARNATION_KEY)
        return None if raw is None else bytes(raw).decode()

    def set_incarnation(self, incarnation: str, watermark: int | None = None) -> None:
        """Record the broker incarnation; with ``watermark``, also reset the watermark to it.

        Both go in one synced WriteBatch.  A new broker incarnation restarts offsets, so the
        ingest resets the watermark (usually to -1) when the marker differs.
        """
        self._writable()
        wb = WriteBatch(raw_mode=True)
        wb.put(keys.INCARNATION_KEY, incarnation.encode())
        if watermark is not None:
            wb.put(keys.WATERMARK_KEY, keys.pack_i64(watermark))
        self._db.write(wb, write_options(StoreOptions(sync=True)))
        if watermark is not None:
            self._watermark = watermark

    # ------------------------------------------------------------------ dedupe, writing

    def _load_last(self, session_id: str) -> int:
        raw = self._db.get(keys.session_key(session_id))
        last = _NONE if raw is None else decode_last_seq(raw)
        if len(self._last) >= _CACHE_LIMIT:
            self._last.clear()
        self._last[session_id] = last
        return last

    def _remember(self, last_seqs: dict[str, int]) -> None:
        if len(self._last) + len(last_seqs) > _CACHE_LIMIT:
            self._last.clear()
        self._last.update(last_seqs)

    def seen(self, session_id: str, seq: int, producer: str = "") -> bool:
        """Is (session_id, producer, seq) durably indexed?  No RocksDB read when
        seq > last_seq."""
        last = self._last.get(session_id)
        if last is None:
            last = self._load_last(session_id)
        if seq > last:
            return False
        return self._db.get(keys.entry_key(session_id, seq, producer)) is not None

    def begin(self, behind: IndexBatch | None = None) -> IndexBatch:
        """A new batch; ``behind`` is the batch still committing before it (for dedupe)."""
        return IndexBatch(self, behind)

    def write(self, pending: Mapping[str, PendingSession], watermark: int) -> None:
        """Write a batch's entries, session rows, counters and ``watermark`` in one WriteBatch.

        Called by :meth:`IndexBatch.commit`, after the log's fsync.  Only then does anything
        reach readers and the dedupe cache.
        """
        self._writable()
        db = self._db
        wb = WriteBatch(raw_mode=True)
        new_entries = 0
        new_sessions = 0
        max_loc = self._max_location
        last_seqs: dict[str, int] = {}
        put = wb.put
        suffixes = {"": b""}  # producer -> its key suffix, encoded once per batch
        for sid, p in pending.items():
            seqs = p.seqs
            prefix = keys.entry_prefix(sid)
            skey = keys.session_key(sid)
            old = db.get(skey)
            for (seq, producer), packed in seqs.items():
                suffix = suffixes.get(producer)
                if suffix is None:
                    suffix = suffixes[producer] = producer.encode()
                put(prefix + _pack_u64(seq + _BIAS) + suffix, packed)
            hi_seq = max(seqs)[0]  # keys are (seq, producer): the greatest seq of any producer
            added = len(seqs)
            if old is None:
                new_sessions += 1
            else:
                old_last_seq = decode_last_seq(old)
                # A key added again (the caller skipped is_new) is counted once.
                added -= sum(1 for q, pr in seqs if q <= old_last_seq and self.seen(sid, q, pr))
                hi_seq = max(hi_seq, old_last_seq)
            lo_loc = min(seqs.values())
            hi_loc = max(seqs.values())
            row = Row(lo_loc, hi_loc, added, hi_seq, p.min_ts, p.max_ts, p.agent, p.model)
            wb.put(skey, merge_row(old, row))
            new_entries += added
            last_seqs[sid] = hi_seq
            if hi_loc > max_loc:
                max_loc = hi_loc
        wm = max(watermark, self._watermark)
        entries = self._entries + new_entries
        sessions = self._sessions + new_sessions
        wb.put(keys.WATERMARK_KEY, keys.pack_i64(wm))
        wb.put(keys.ENTRIES_KEY, keys.pack_u64(entries))
        wb.put(keys.SESSIONS_KEY, keys.pack_u64(sessions))
        if max_loc:
            wb.put(keys.MAX_LOCATION_KEY, max_loc)
        db.write(wb, self._write_opts)
        # Only now is it durable in the index: publish to readers and the dedupe cache.
        self._watermark = wm
        self._entries = entries
        self._sessions = sessions
        self._max_location = max_loc
        self._remember(last_seqs)

    # ------------------------------------------------------------------ reading

    def _decode(self, session_id: str, raw: bytes) -> SessionInfo:
        return decode_info(session_id, self.partition, raw)

    def session(self, session_id: str) -> SessionInfo | None:
        raw = self._db.get(keys.session_key(session_id))
        return None if raw is None else self._decode(session_id, raw)

    def sessions(self) -> Iterator[SessionInfo]:
        """Every session, in session-key (byte) order."""
        for k, v in _range(self._db, keys.SESSION, keys.ENTRY):
            yield self._decode(keys.session_id_of(k), v)

    def locations(
        self, session_id: str, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[tuple[int, Location]]:
        """(seq, Location) of the session's entries by seq, then producer; bounds are
        inclusive (each seq of the range, of every producer)."""
        for seq, _, loc in self.entries(session_id, from_seq, to_seq):
            yield seq, loc

    def entries(
        self, session_id: str, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[tuple[int, str, Location]]:
        """(seq, producer, Location) of the session's entries by seq, then producer (the
        replay order); bounds are inclusive (each seq of the range, of every producer)."""
        prefix = keys.entry_prefix(session_id)
        lower = prefix if from_seq is None else prefix + keys.pack_seq(from_seq)
        if to_seq is None or to_seq >= keys.SEQ_BIAS - 1:
            upper = keys.entry_prefix_end(prefix)
        else:
            upper = prefix + keys.pack_seq(to_seq + 1)
        if lower >= upper:
            return
        cut = len(prefix)
        split = keys.split_entry
        unpack = Location.unpack
        for k, v in _range(self._db, lower, upper):
            seq, producer = split(k, cut)
            yield seq, producer, unpack(v)

    def location(self, session_id: str, seq: int, producer: str = "") -> Location | None:
        raw = self._db.get(keys.entry_key(session_id, seq, producer))
        return None if raw is None else Location.unpack(raw)

    def stats(self) -> dict[str, int]:
        return {
            "partition": self.partition,
            "sessions": self._sessions,
            "entries": self._entries,
            "watermark": self._watermark,
        }

    # ------------------------------------------------------------------ retention

    def remove_segments(self, bases: Collection[int]) -> int:
        """Drop every entry pointing into the segments ``bases``; return how many.

        Scans the entry table once (retention is rare; a per-segment secondary index would
        double the hot-path write cost).  One WriteBatch: entries, fixed SessionInfos,
        counters.  A session left with no entries loses its SessionInfo.
        """
        self._writable()
        doomed = set(bases)
        if not doomed:
            return 0
        removed_total = 0
        sessions_gone = 0
        wb = WriteBatch(raw_mode=True)
        gone: list[str] = []

        def settle(prefix: bytes, removed: int, first: bytes, last: bytes) -> None:
            nonlocal sessions_gone
            sid = prefix[3:].decode()
            skey = keys.session_key(sid)
            raw = self._db.get(skey)
            if raw is None:  # entries without a session row: cannot happen, keep counts sane
                return
            row = shrink_row(raw, removed, first, last)
            if row is None:
                wb.delete(skey)
                sessions_gone += 1
                gone.append(sid)
            else:
                wb.put(skey, row)

        cur: bytes | None = None
        removed = 0
        max_loc = b""  # the greatest location left: the old one may point into a doomed segment
        first = b""
        last = b""
        seg_of = keys._U64.unpack_from
        for k, v in _range(self._db, keys.ENTRY, keys.ENTRY_END):
            prefix = keys.entry_prefix_of(k)
            if prefix != cur:
                if cur is not None and removed:
                    settle(cur, removed, first, last)
                cur, removed, first, last = prefix, 0, b"", b""
            if seg_of(v)[0] in doomed:
                wb.delete(k)
                removed += 1
                removed_total += 1
            else:
                if not first or v < first:
                    first = v
                if v > last:
                    last = v
                if v > max_loc:
                    max_loc = v
        if cur is not None and removed:
            settle(cur, removed, first, last)
        if removed_total == 0:
            return 0
        entries = max(self._entries - removed_total, 0)
        sessions = max(self._sessions - sessions_gone, 0)
        wb.put(keys.ENTRIES_KEY, keys.pack_u64(entries))
        wb.put(keys.SESSIONS_KEY, keys.pack_u64(sessions))
        if max_loc:
            wb.put(keys.MAX_LOCATION_KEY, max_loc)
        else:
            wb.delete(keys.MAX_LOCATION_KEY)
        # Synced, unlike a commit: the segment files go right after, and a file removal is
        # durable (directory fsync) while an unsynced index write may be lost, which would
        # leave entries pointing into a deleted segment after a power cut.
        self._db.write(wb, _SYNCED)
        self._entries = entries
        self._sessions = sessions
        self._max_location = max_loc
        for sid in gone:
            # The dedupe cache must not claim what the index no longer holds.
            self._last.pop(sid, None)
        return removed_total

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
