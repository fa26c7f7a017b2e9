"""SummaryStore: a partition's session summaries, folded from its hot log, in RocksDB.

Lives in ``<partition dir>/summaries/`` (rocksdict, raw bytes), beside the
partition's index; keys: ``00 cursor`` (the packed Location of the last frame
folded), ``01 <session_id>`` (a SessionSummary as JSON, without its fold state),
``02 <session_id>`` (that summary changed and is not yet published to
``kaizen.sessions``) and ``03 <session_id>`` (its fold state: the seqs folded and
the tool calls awaiting a result, which grow with the session and only the next
fold needs; `SessionSummary.split_bytes`).

Invariants:

- Exactly once: every summary a fold step changed and the cursor past the
  frames it folded are written in ONE WriteBatch, so after a crash either the
  step is wholly in or wholly out, and the next step starts after the cursor.
  The hot log holds each (session_id, seq) once (the ingest dedupes before
  appending), and SessionSummary.fold is idempotent per (session_id, seq)
  besides; redelivery, restarts and rebalances therefore never double count.
- Only durable data is folded: a step reads frames up to a bound the caller
  takes from the index (`PartitionStore.max_location`, invariant 4: the index
  never points past fsynced data).
- Published at least once: a changed summary is marked unpublished in the same
  batch; the mark goes only after the topic acked it (`mark_published`), so a
  crash in between publishes it again (the topic is compacted by session id:
  a repeat is harmless).
- Rebuildable: deleting the directory (or `reset`) refolds from the log start.
- Decoupled from the ingest's group commit: folding costs ~20 µs an event in
  Python (full Avro decode + fold) against ~4 µs for the whole ingest path, so
  the worker folds in its idle time and in small slices during bursts
  (workers/ingest/folding.py); summaries may lag the index by a burst.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from rocksdict import AccessType, Options, Rdict, ReadOptions, WriteBatch

from workers.analytics.aggregate import SessionSummary
from workers.analytics.counters import UsageCounters
from workers.hotlog import Location

SUMMARIES_DIR = "summaries"
CURSOR_KEY = b"\x00cursor"
SUMMARY = b"\x01"
UNPUBLISHED = b"\x02"
STATE = b"\x03"


def _options() -> Options:
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    return o


class SummaryStore:
    """Summaries of one partition's sessions.  Create with :meth:`open`."""

    def __init__(self, db: Rdict, path: Path, *, read_only: bool = False) -> None:
        self._db = db
        self.path = path
        self.read_only = read_only
        raw = db.get(CURSOR_KEY)
        self._cursor: bytes = bytes(raw) if raw is not None else b""
        self.counters = UsageCounters()  # this process's folds, for /metrics

    @classmethod
    def open(cls, partition_dir: Path, *, read_only: bool = False) -> SummaryStore:
        path = Path(partition_dir) / SUMMARIES_DIR
        if read_only:
            db = Rdict(str(path), _options(), access_type=AccessType.read_only())
        else:
            path.mkdir(parents=True, exist_ok=True)
            db = Rdict(str(path), _options())
        return cls(db, path, read_only=read_only)

    @property
    def cursor(self) -> Location | None:
        """The last frame folded (None: nothing yet)."""
        return Location.unpack(self._cursor) if self._cursor else None

    def get(self, session_id: str) -> SessionSummary | None:
        """The whole summary, fold state included (what the next fold starts from)."""
        key = session_id.encode()
        raw = self._db.get(SUMMARY + key)
        if raw is None:
            return None
        d = json.loads(bytes(raw))
        state = self._db.get(STATE + key)
        if state is not None:
            d.update(json.loads(bytes(state)))
        return SessionSummary.from_dict(d)

    def _range(self, lower: bytes, upper: bytes) -> Iterator[tuple[bytes, bytes]]:
        ro = ReadOptions()
        ro.set_iterate_lower_bound(lower)
        ro.set_iterate_upper_bound(upper)
        return cast(Iterator[tuple[bytes, bytes]], self._db.items(from_key=lower, read_opt=ro))

    def all(self) -> Iterator[SessionSummary]:
        """Every summary as readers see it: without the fold state (seqs folded etc.)."""
        for _k, v in self._range(SUMMARY, UNPUBLISHED):
            yield SessionSummary.from_bytes(v)

    def unpublished(self, limit: int = 1_000) -> list[tuple[str, bytes]]:
        """(session_id, summary JSON) of up to `limit` summaries not yet published."""
        out = []
        for k, _ in self._range(UNPUBLISHED, STATE):
            sid = k[1:].decode()
            raw = self._db.get(SUMMARY + k[1:])
            if raw is not None:
                out.append((sid, bytes(raw)))
            if len(out) >= limit:
                break
        return out

    def mark_published(self, session_ids: list[str]) -> None:
        wb = WriteBatch(raw_mode=True)
        for sid in session_ids:
            wb.delete(UNPUBLISHED + sid.encode())
        self._db.write(wb)

    def fold_log(self, log: Any, upto: Location | None, max_frames: int = 2_000) -> int:
        """Fold up to `max_frames` frames after the cursor and at or before `upto`; how many."""
        from workers.codec.event import decode_event

        if upto is None or (self._cursor and Location.unpack(self._cursor) >= upto):
            return 0
        cursor = self.cursor
        changed: dict[str, SessionSummary] = {}
        last: Location | None = None
        n = 0
        for loc, payload in log.scan(cursor):
            if cursor is not None and loc <= cursor:
                continue
            if loc > upto or n >= max_frames:
                break
            last = loc
            n += 1
            try:
                event = decode_event(payload)
            except Exception:  # the ingest validated it: only a writer schema we lack
                continue
            sid = event["session_id"]
            summary = changed.get(sid)
            if summary is None:
                summary = changed[sid] = self.get(sid) or SessionSummary(sid)
            if summary.fold(event):
                self.counters.count(event, summary)
        if last is None:
            return 0
        wb = WriteBatch(raw_mode=True)
        for sid, summary in changed.items():
            public, state = summary.split_bytes()
            wb.put(SUMMARY + sid.encode(), public)
            wb.put(STATE + sid.encode(), state)
            wb.put(UNPUBLISHED + sid.encode(), b"")
        packed = last.pack()
        wb.put(CURSOR_KEY, packed)
        self._db.write(wb)
        self._cursor = packed
        return n

    def close(self) -> None:
        self._db.close()

    @classmethod
    def read_all(cls, partition_dir: Path) -> list[SessionSummary]:
        """Every summary of a partition directory, read-only (a worker may hold it); [] if none."""
        if not (Path(partition_dir) / SUMMARIES_DIR).is_dir():
            return []
        store = cls.open(partition_dir, read_only=True)
        try:
            return list(store.all())
        finally:
            store.close()

    def reset(self) -> None:
        """Forget everything: the next fold starts at the beginning of the log."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), _options())
        self._cursor = b""
