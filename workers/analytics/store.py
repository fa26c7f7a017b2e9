"""SummaryStore: a partition's session summaries, folded from its hot log, in RocksDB.

Lives in ``<partition dir>/summaries/`` (rocksdict, raw bytes), beside the
partition's index; keys: ``00 cursor`` (the packed Location of the last frame
folded), ``01 <session_id>`` (a SessionSummary as JSON, without its fold state),
``02 <session_id>`` (that summary changed and is not yet published to
``kaizen.sessions``) and ``03 <session_id>`` (its fold state: the seqs folded and
the tool calls awaiting a result, which grow with the session and only the next
fold needs; `SessionSummary.split_bytes`), ``04 <session_id>`` (its stats row,
workers/analytics/digest.py: what `stats --since` reads instead of the
summary), ``05 <by> 00 <h|b> 00 <name>`` (one cell of the rollup of every row
grouped by model, agent, workspace, host or day: views.Rollup, unpriced, what
`stats` reads without --since), ``06 <by> 00 <day> 00 <h|b> 00 <name>`` (the
same cell over only the sessions last active on UTC day <day>: what `stats
--since` reads for the days after the one it starts in), ``07 <day> 00
<session_id>`` (the sessions last active on <day>: the rows `stats --since`
reads for the day it starts in), ``00 rows`` (present once every summary has
its stats row and the rollups count them all, in this key layout) and ``00 fold``
(the `FOLD_VERSION` of the fold that made the summaries).

Invariants:

- Exactly once: every summary a fold step changed and the cursor past the
  frames it folded are written in ONE WriteBatch, so after a crash either the
  step is wholly in or wholly out, and the next step starts after the cursor.
  The hot log holds each (session_id, producer, seq) once (the ingest dedupes before
  appending), and SessionSummary.fold is idempotent per (session_id, producer, seq)
  besides; redelivery, restarts and rebalances therefore never double count.
- Only durable data is folded: a step reads frames up to a bound the caller
  takes from the index (`PartitionStore.max_location`, invariant 4: the index
  never points past fsynced data).
- Published at least once: a changed summary is marked unpublished in the same
  batch; the mark goes only after the topic acked it (`mark_published`), so a
  crash in between publishes it again (the topic is compacted by session id:
  a repeat is harmless).
- A stats row is written in the same batch as its summary, and the rollups
  move from the session's old row to its new one in that batch too: so the
  rollups always equal the rollup of the stored rows (exactly once, like the
  summaries). Likewise the day-keyed rollups and the last-day index: each
  session sits in exactly the day of its current row's last_ts
  (views.last_day), so `rollup_since` equals the rollup of the rows with
  last_ts >= since. A store that predates rows gets rows and rollups in one batch
  (with the ``00 rows`` mark, the row layout's version) when first opened for
  writing, and so does a store whose rows have another layout; until then
  readers derive both from the summaries.
- Rebuildable: deleting the directory (or `reset`) refolds from the log start,
  and so does opening for writing a store folded by another `FOLD_VERSION`
  (summaries made by another fold, e.g. one that counted a hooked and imported
  tool call twice, are not patched: they are made again from the log).
- Decoupled from the ingest's group commit: folding costs ~20 µs an event in
  Python (full Avro decode + fold) against ~4 µs for the whole ingest path, so
  the worker folds in its idle time and in small slices during bursts
  (workers/ingest/folding.py); summaries may lag the index by a burst.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from rocksdict import AccessType, Options, Rdict, ReadOptions, WriteBatch

from workers.analytics.aggregate import FOLD_VERSION, SessionSummary
from workers.analytics.counters import UsageCounters
from workers.analytics.digest import ROW_VERSION, StatsRow, decode, digest, encode
from workers.analytics.views import (
    GROUP_KEYS,
    Rollup,
    active_since,
    last_day,
    last_day_of_ms,
    rollup_rows,
)
from workers.hotlog import Location

T = TypeVar("T")

SUMMARIES_DIR = "summaries"
CURSOR_KEY = b"\x00cursor"
SUMMARY = b"\x01"
UNPUBLISHED = b"\x02"
STATE = b"\x03"
ROW = b"\x04"
ROW_END = b"\x05"
ROLLUP = b"\x05"
ROLLUP_END = b"\x06"
DAY_ROLLUP = b"\x06"
LAST_DAY = b"\x07"
DAYS_END = b"\x08"
# every summary has its stats row in this layout, and the rollups count them all
ROWS_KEY = b"\x00rows"
ROWS_MARK = f"{ROW_VERSION}.days".encode()
FOLD_KEY = b"\x00fold"
FOLD_MARK = str(FOLD_VERSION).encode()


def _rollup_prefix(by: str, day: str | None = None) -> bytes:
    if day is None:
        return ROLLUP + by.encode() + b"\x00"
    return DAY_ROLLUP + by.encode() + b"\x00" + day.encode() + b"\x00"


def _last_day_key(row: StatsRow) -> bytes:
    return LAST_DAY + last_day(row).encode() + b"\x00" + row.session_id.encode()


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
        if not read_only and self._db.get(FOLD_KEY) != FOLD_MARK:
            if self._cursor:
                self.reset()  # folded by another fold: fold the log again
            self._db[FOLD_KEY] = FOLD_MARK
        if not read_only and not self._has_rows():
            self._add_rows()

    def _add_rows(self) -> None:
        """Give every summary its stats row and the rollups over them all, in one batch
        with the mark that all have them."""
        # rows and rollups of another layout, if any: gone before the rollups are summed
        # anew (a crash in between leaves the mark wrong, so the next open redoes this)
        self._db.delete_range(ROW, ROW_END)
        self._db.delete_range(ROLLUP, DAYS_END)
        wb = WriteBatch(raw_mode=True)
        rows = []
        days: dict[str, list[StatsRow]] = {}
        for k, v in self._range(SUMMARY, UNPUBLISHED):
            rows.append(digest(SessionSummary.from_bytes(v)))
            wb.put(ROW + k[1:], encode(rows[-1]))
            wb.put(_last_day_key(rows[-1]), b"")
            days.setdefault(last_day(rows[-1]), []).append(rows[-1])
        for by in GROUP_KEYS:
            self._put_rollup(wb, _rollup_prefix(by), rollup_rows(rows, by))
            for day, on_day in days.items():
                self._put_rollup(wb, _rollup_prefix(by, day), rollup_rows(on_day, by))
        wb.put(ROWS_KEY, ROWS_MARK)
        self._db.write(wb)

    def _has_rows(self) -> bool:
        return self._db.get(ROWS_KEY) == ROWS_MARK

    def _put_rollup(self, wb: WriteBatch, prefix: bytes, delta: Rollup) -> None:
        """Add `delta` to the stored rollup under `prefix`, cell by cell, into the batch."""
        for tag, cells in ((b"h", delta.homes), (b"b", delta.buckets)):
            for name, vals in cells.items():
                if not any(vals):
                    continue
                key = prefix + tag + b"\x00" + name.encode()
                raw = self._db.get(key)
                if raw is not None:
                    vals = [a + b for a, b in zip(json.loads(bytes(raw)), vals, strict=True)]
                if any(vals):
                    wb.put(key, json.dumps(vals, separators=(",", ":")).encode())
                else:
                    wb.delete(key)

    def rollup(self, by: str) -> Rollup:
        """The totals of every session grouped `by`, unpriced (views.price_rollup prices them)."""
        if not self._has_rows():
            return rollup_rows(self.rows(), by)
        prefix = _rollup_prefix(by)
        out = Rollup()
        for k, v in self._range(prefix, prefix[:-1] + b"\x01"):  # every key after by 00
            tag, name = k[len(prefix) :].split(b"\x00", 1)
            (out.homes if tag == b"h" else out.buckets)[name.decode()] = json.loads(v)
        return out

    def rollup_since(self, by: str, since_ms: int) -> Rollup:
        """The totals grouped `by` of the sessions active since `since_ms` (last_ts >= it):
        the day-keyed rollups of the days after since's UTC day, plus the rows of the
        sessions last active on that day, filtered; never every row."""
        if not self._has_rows():
            return rollup_rows((r for r in self.rows() if active_since(r.last_ts, since_ms)), by)
        first = last_day_of_ms(since_ms)
        prefix = DAY_ROLLUP + by.encode() + b"\x00"
        out = Rollup()
        # days are fixed-width, so "<day> 01" sorts after every key of that day and
        # before every key of the next
        lower = prefix + first.encode() + b"\x01"
        for k, v in self._range(lower, prefix[:-1] + b"\x01"):
            _day, tag, name = k[len(prefix) :].split(b"\x00", 2)
            out.add_cell(tag == b"h", name.decode(), json.loads(v))
        on_day = LAST_DAY + first.encode() + b"\x00"
        boundary = []
        for k, _ in self._range(on_day, on_day[:-1] + b"\x01"):
            raw = self._db.get(ROW + k[len(on_day) :])
            if raw is not None:
                boundary.append(decode(bytes(raw)))
        return rollup_rows((r for r in boundary if active_since(r.last_ts, since_ms)), by, into=out)

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
        items = cast(Iterator[tuple[bytes, bytes]], self._db.items(from_key=lower, read_opt=ro))
        # rocksdict does not always honour the upper bound (seen with multi-byte bounds in
        # read-only mode): stop at it here as well
        return itertools.takewhile(lambda kv: kv[0] < upper, items)

    def all(self) -> Iterator[SessionSummary]:
        """Every summary as readers see it: without the fold state (seqs folded etc.)."""
        for _k, v in self._range(SUMMARY, UNPUBLISHED):
            yield SessionSummary.from_bytes(v)

    def rows(self) -> Iterator[StatsRow]:
        """Every session's stats row (derived from the summaries in a store that has none)."""
        if not self._has_rows():
            yield from (digest(s) for s in self.all())
            return
        for _k, v in self._range(ROW, ROW_END):
            yield decode(v)

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
            counted = summary.fold(event)
            if counted is not None:
                self.counters.count(event, summary, counted)
        if last is None:
            return 0
        wb = self.batch(changed.values())
        packed = last.pack()
        wb.put(CURSOR_KEY, packed)
        self._db.write(wb)
        self._cursor = packed
        return n

    def batch(self, summaries: Iterable[SessionSummary]) -> WriteBatch:
        """A batch writing each summary (of distinct sessions), its fold state and stats row,
        marked unpublished; and the rollups moved from each session's old row to its new."""
        wb = WriteBatch(raw_mode=True)
        # rollup key prefix -> its delta: the whole rollups and the day-keyed ones
        deltas: dict[bytes, Rollup] = {}
        for summary in summaries:
            key = summary.session_id.encode()
            public, state = summary.split_bytes()
            row = digest(summary)
            raw = self._db.get(ROW + key)
            old = decode(bytes(raw)) if raw is not None else None
            for by in GROUP_KEYS:
                whole = deltas.setdefault(_rollup_prefix(by), Rollup())
                if old is not None:
                    rollup_rows([old], by, -1, whole)
                    was = deltas.setdefault(_rollup_prefix(by, last_day(old)), Rollup())
                    rollup_rows([old], by, -1, was)
                rollup_rows([row], by, 1, whole)
                now = deltas.setdefault(_rollup_prefix(by, last_day(row)), Rollup())
                rollup_rows([row], by, 1, now)
            if old is not None:
                wb.delete(_last_day_key(old))
            wb.put(SUMMARY + key, public)
            wb.put(STATE + key, state)
            wb.put(UNPUBLISHED + key, b"")
            wb.put(ROW + key, encode(row))
            wb.put(_last_day_key(row), b"")
        for prefix, delta in deltas.items():
            self._put_rollup(wb, prefix, delta)
        return wb

    def close(self) -> None:
        self._db.close()

    @classmethod
    def read_all(cls, partition_dir: Path) -> list[SessionSummary]:
        """Every summary of a partition directory, read-only (a worker may hold it); [] if none."""
        return cls._read(partition_dir, cls.all)

    @classmethod
    def read_rows(cls, partition_dir: Path) -> list[StatsRow]:
        """Every stats row of a partition directory, read-only; [] if none."""
        return cls._read(partition_dir, cls.rows)

    @classmethod
    def read_rollup(cls, partition_dir: Path, by: str) -> Rollup:
        """The rollup `by` of a partition directory, read-only; empty if none."""
        if not (Path(partition_dir) / SUMMARIES_DIR).is_dir():
            return Rollup()
        store = cls.open(partition_dir, read_only=True)
        try:
            return store.rollup(by)
        finally:
            store.close()

    @classmethod
    def read_rollup_since(cls, partition_dir: Path, by: str, since_ms: int) -> Rollup:
        """The rollup `by` of the sessions active since `since_ms`, read-only; empty if none."""
        if not (Path(partition_dir) / SUMMARIES_DIR).is_dir():
            return Rollup()
        store = cls.open(partition_dir, read_only=True)
        try:
            return store.rollup_since(by, since_ms)
        finally:
            store.close()

    @classmethod
    def _read(cls, partition_dir: Path, pick: Callable[[SummaryStore], Iterator[T]]) -> list[T]:
        if not (Path(partition_dir) / SUMMARIES_DIR).is_dir():
            return []
        store = cls.open(partition_dir, read_only=True)
        try:
            return list(pick(store))
        finally:
            store.close()

    def reset(self) -> None:
        """Forget everything: the next fold starts at the beginning of the log."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), _options())
        self._cursor = b""
        self._db[FOLD_KEY] = FOLD_MARK
        self._add_rows()
