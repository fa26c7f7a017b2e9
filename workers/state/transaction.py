"""IndexBatch: what one group commit adds to the index, buffered in memory.

The batch only buffers; its store writes it (:meth:`PartitionStore.write`, called by
:meth:`IndexBatch.commit`), the way Quix Streams' ``PartitionTransaction`` hands its cache to
``StorePartition.write``.  This module imports nothing of the store: the batch reaches it
through :class:`BatchTarget`.

Invariants:

* nothing reaches RocksDB before :meth:`IndexBatch.commit`; ``add`` only records in memory
  (a few dict operations), so an aborted or crashed batch leaves no trace;
* dedupe is decided here, in :meth:`IndexBatch.is_new` (and :meth:`IndexBatch.fresh`, its
  form for the events of one message): a (session_id, producer, seq) is new when it is
  neither pending in this batch, nor in the batch committing behind it (``behind``), nor
  durably indexed (``BatchTarget.seen``).  The producer is part of the key because each
  producer (a spool) numbers a session's events from 0: two machines feeding one session
  give the same seqs, and only a resend of the same producer's event is a duplicate;
* one batch at a time per store is written (the ingest's group commit is the single writer);
  a closed batch (committed or aborted) holds nothing and accepts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from workers.errors import StateError
from workers.hotlog import Location

_NO_TS_MIN = 1 << 63
_NO_TS_MAX = -(1 << 63)


class BatchClosed(StateError, RuntimeError):
    """The batch was already committed or aborted."""


class PendingSession:
    """What one batch holds for one session."""

    __slots__ = ("agent", "max_ts", "min_ts", "model", "seqs")

    def __init__(self) -> None:
        self.seqs: dict[tuple[int, str], bytes] = {}  # (seq, producer) -> packed Location
        self.min_ts = _NO_TS_MIN
        self.max_ts = _NO_TS_MAX
        self.agent = ""
        self.model: str | None = None


class BatchTarget(Protocol):
    """What a batch needs of its store (:class:`~workers.state.store.PartitionStore`)."""

    def seen(self, session_id: str, seq: int, producer: str = "") -> bool: ...

    def write(self, pending: Mapping[str, PendingSession], watermark: int) -> None: ...


class Keyed(Protocol):
    """An event as dedupe sees it (``workers.ingest.decode.Decoded`` is one)."""

    @property
    def session_id(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def producer(self) -> str: ...


K = TypeVar("K", bound=Keyed)


class IndexBatch:
    """Entries of one group commit.  Create with :meth:`PartitionStore.begin`."""

    __slots__ = ("_behind", "_closed", "_count", "_pending", "_target")

    def __init__(self, target: BatchTarget, behind: IndexBatch | None = None) -> None:
        self._target = target
        self._behind = behind
        self._pending: dict[str, PendingSession] = {}
        self._count = 0
        self._closed = False

    def is_new(self, session_id: str, seq: int, producer: str = "") -> bool:
        """Is (session_id, producer, seq) neither pending here or behind, nor durably indexed?"""
        p = self._pending.get(session_id)
        if p is not None and (seq, producer) in p.seqs:
            return False
        behind = self._behind
        if behind is not None and behind.contains(session_id, seq, producer):
            return False
        return not self._target.seen(session_id, seq, producer)

    def fresh(self, events: Sequence[K]) -> list[K]:
        """The events of one message to append, in order: :meth:`is_new`, first copy only."""
        is_new = self.is_new
        if len(events) == 1:
            ev = events[0]
            return [ev] if is_new(ev.session_id, ev.seq, ev.producer) else []
        out = []
        taken: set[tuple[str, int, str]] = set()
        for ev in events:
            k = (ev.session_id, ev.seq, ev.producer)
            if k in taken or not is_new(*k):
                continue
            taken.add(k)
            out.append(ev)
        return out

    def add(
        self,
        session_id: str,
        seq: int,
        location: Location,
        ts_ms: int,
        agent: str,
        model: str | None,
        producer: str = "",
    ) -> None:
        """Record (session_id, producer, seq) -> location.  The hot path: memory only.

        The caller asks :meth:`is_new` (or :meth:`fresh`) first; adding a key again
        overwrites its location and is counted once.
        """
        p = self._pending.get(session_id)
        if p is None:
            if self._closed:
                raise BatchClosed("batch already committed or aborted")
            p = self._pending[session_id] = PendingSession()
        seqs = p.seqs
        key = (seq, producer)
        if key not in seqs:
            self._count += 1
        seqs[key] = location.pack()
        if ts_ms < p.min_ts:
            p.min_ts = ts_ms
        if ts_ms > p.max_ts:
            p.max_ts = ts_ms
        p.agent = agent
        if model is not None:
            p.model = model

    def contains(self, session_id: str, seq: int, producer: str = "") -> bool:
        """Is (session_id, producer, seq) pending in this batch?"""
        p = self._pending.get(session_id)
        return p is not None and (seq, producer) in p.seqs

    def __len__(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def commit(self, watermark: int) -> None:
        """Have the store write everything and ``watermark`` (after the log's fsync)."""
        if self._closed:
            raise BatchClosed("batch already committed or aborted")
        self._target.write(self._pending, watermark)
        self._close()

    def abort(self) -> None:
        """Forget everything added; nothing was written."""
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._pending = {}
        self._count = 0
        self._behind = None

    def __enter__(self) -> IndexBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.abort()
