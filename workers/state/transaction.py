"""IndexBatch: one group commit of index entries, written as one RocksDB WriteBatch.

Invariants:

* nothing reaches RocksDB before :meth:`IndexBatch.commit`; ``add`` only records in memory
  (a few dict operations, no RocksDB call), so an aborted or crashed batch leaves no trace;
* ``commit(watermark)`` writes every (session, seq) -> Location, every touched SessionInfo,
  the counters and the watermark in ONE ``Rdict.write``: after a crash either all of them
  are in the index or none is; the caller commits only after the hot log's fsync, so the
  index never points past durable data (invariant 4);
* the watermark never moves backwards: a commit stores ``max(current, watermark)``;
* ``seen()`` of the store answers True for the batch's entries only after the write
  succeeded (the dedupe cache is updated last);
* one batch at a time per store (the ingest's group commit is the single writer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rocksdict import WriteBatch

from workers.hotlog import Location
from workers.state import keys
from workers.state.records import encode_fields

if TYPE_CHECKING:
    from workers.state.store import PartitionStore

_BIAS = keys.SEQ_BIAS
_pack_u64 = keys._U64.pack
_NO_TS_MIN = 1 << 63
_NO_TS_MAX = -(1 << 63)


class BatchClosed(RuntimeError):
    """The batch was already committed or aborted."""


class _Pending:
    """What one batch holds for one session."""

    __slots__ = ("agent", "max_ts", "min_ts", "model", "seqs")

    def __init__(self) -> None:
        self.seqs: dict[int, bytes] = {}  # seq -> packed Location
        self.min_ts = _NO_TS_MIN
        self.max_ts = _NO_TS_MAX
        self.agent = ""
        self.model: str | None = None


class IndexBatch:
    """Entries of one group commit.  Create with :meth:`PartitionStore.begin`."""

    __slots__ = ("_closed", "_count", "_pending", "_store")

    def __init__(self, store: PartitionStore) -> None:
        self._store = store
        self._pending: dict[str, _Pending] = {}
        self._count = 0
        self._closed = False

    def add(
        self,
        session_id: str,
        seq: int,
        location: Location,
        ts_ms: int,
        agent: str,
        model: str | None,
    ) -> None:
        """Record (session_id, seq) -> location.  The hot path: memory only.

        The caller dedupes first (``store.seen`` / ``contains``); adding a seq again
        overwrites its location and is counted once.
        """
        p = self._pending.get(session_id)
        if p is None:
            if self._closed:
                raise BatchClosed("batch already committed or aborted")
            p = self._pending[session_id] = _Pending()
        seqs = p.seqs
        if seq not in seqs:
            self._count += 1
        seqs[seq] = location.pack()
        if ts_ms < p.min_ts:
            p.min_ts = ts_ms
        if ts_ms > p.max_ts:
            p.max_ts = ts_ms
        p.agent = agent
        if model is not None:
            p.model = model

    def contains(self, session_id: str, seq: int) -> bool:
        """Is (session_id, seq) pending in this batch?"""
        p = self._pending.get(session_id)
        return p is not None and seq in p.seqs

    def __len__(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def commit(self, watermark: int) -> None:
        """Write everything and ``watermark`` in one WriteBatch (after the log's fsync)."""
        if self._closed:
            raise BatchClosed("batch already committed or aborted")
        store = self._store
        db = store._db
        wb = WriteBatch(raw_mode=True)
        new_entries = 0
        new_sessions = 0
        max_loc = store._max_location
        last_seqs: dict[str, int] = {}
        for sid, p in self._pending.items():
            seqs = p.seqs
            prefix = keys.entry_prefix(sid)
            skey = keys.session_key(sid)
            old_raw = db.get(skey)
            lo_loc = min(seqs.values())
            hi_loc = max(seqs.values())
            hi_seq = max(seqs)
            if old_raw is None:
                for seq, packed in seqs.items():
                    wb.put(prefix + _pack_u64(seq + _BIAS), packed)
                count = len(seqs)
                new_sessions += 1
                info = encode_fields(
                    lo_loc, hi_loc, count, hi_seq, p.min_ts, p.max_ts, p.agent, p.model
                )
            else:
                old = store._decode(sid, old_raw)
                old_last_seq = old.last_seq
                overlap = 0
                for seq, packed in seqs.items():
                    key = prefix + _pack_u64(seq + _BIAS)
                    # Only a seq at or below last_seq can already be indexed (rare: the
                    # caller dedupes); count it once.
                    if seq <= old_last_seq and db.get(key) is not None:
                        overlap += 1
                    wb.put(key, packed)
                count = old.count + len(seqs) - overlap
                old_first = old.first.pack()
                old_last = old.last.pack()
                info = encode_fields(
                    lo_loc if lo_loc < old_first else old_first,
                    hi_loc if hi_loc > old_last else old_last,
                    count,
                    max(hi_seq, old_last_seq),
                    min(p.min_ts, old.first_ts_ms),
                    max(p.max_ts, old.last_ts_ms),
                    p.agent,
                    p.model if p.model is not None else old.model,
                )
                hi_seq = max(hi_seq, old_last_seq)
                new_entries -= overlap
            new_entries += len(seqs)
            wb.put(skey, info)
            last_seqs[sid] = hi_seq
            if hi_loc > max_loc:
                max_loc = hi_loc
        wm = max(watermark, store._watermark)
        entries = store._entries + new_entries
        sessions = store._sessions + new_sessions
        wb.put(keys.WATERMARK_KEY, keys.pack_i64(wm))
        wb.put(keys.ENTRIES_KEY, keys.pack_u64(entries))
        wb.put(keys.SESSIONS_KEY, keys.pack_u64(sessions))
        if max_loc:
            wb.put(keys.MAX_LOCATION_KEY, max_loc)
        db.write(wb, store._write_opts)
        # Only now is it durable in the index: publish to readers and the dedupe cache.
        store._watermark = wm
        store._entries = entries
        store._sessions = sessions
        store._max_location = max_loc
        store._remember(last_seqs)
        self._close()

    def abort(self) -> None:
        """Forget everything added; nothing was written."""
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._pending = {}
        self._count = 0

    def __enter__(self) -> IndexBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.abort()
