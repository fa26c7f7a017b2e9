"""Per-event cost of the partition index (workers.state) against baselines from the same run.

    .venv/bin/python bench/bench_state.py [--events 200000] [--batch 10000] [--sessions 200]

Workload: events of ``--sessions`` sessions with increasing seqs, in group commits of
``--batch``.  Rows (µs per event, best of 3 runs, each in a fresh RocksDB in a temp dir):

* baseline dict: a plain dict insert of (session_id, seq) -> packed Location;
* baseline rocksdict: the same keys' bytes put into a raw WriteBatch, one Rdict.write per
  batch (the floor for any RocksDB-backed index);
* index seen+add: ``store.seen()`` + ``batch.add()`` (the ingest's hot path);
* index commit: ``batch.commit()`` (once per batch, after the log's fsync), per event;
* index total: both;
* index redelivery: the same total when every event is a redelivery (seq <= last_seq:
  seen() does a point lookup and answers True, nothing is added).

Ratios are against "baseline rocksdict".
"""

from __future__ import annotations

import argparse
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

from workers.hotlog import Location
from workers.state import PartitionStore

Event = tuple[str, int, Location, int]


def workload(n: int, sessions: int) -> list[Event]:
    out = []
    for i in range(n):
        s = i % sessions
        out.append(
            (
                f"session-{s:06d}-0123456789abcdef",
                i // sessions,
                Location(i // 50_000, 64 + i * 40 % (1 << 30), 30),
                1_700_000_000_000 + i,
            )
        )
    return out


def best(fn: Callable[[Path], tuple[float, float]], runs: int = 3) -> tuple[float, float]:
    """(best hot-path seconds, best commit seconds) over fresh temp dirs."""
    results = []
    for _ in range(runs):
        d = Path(tempfile.mkdtemp(prefix="bench-state-"))
        try:
            results.append(fn(d))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return min(r[0] for r in results), min(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="20k events instead of --events")
    args = ap.parse_args()
    events = workload(20_000 if args.quick else args.events, args.sessions)
    bsize = args.batch
    chunks = [events[i : i + bsize] for i in range(0, len(events), bsize)]
    n = len(events)
    key_s = struct.Struct(">Q")

    def dict_baseline(_: Path) -> tuple[float, float]:
        d: dict[tuple[str, int], bytes] = {}
        t = time.perf_counter()
        for sid, seq, loc, _ts in events:
            d[(sid, seq)] = loc.pack()
        return time.perf_counter() - t, 0.0

    def rocks_baseline(path: Path) -> tuple[float, float]:
        o = Options(raw_mode=True)
        o.create_if_missing(True)
        db = Rdict(str(path), o)
        hot = commit = 0.0
        for chunk in chunks:
            t0 = time.perf_counter()
            wb = WriteBatch(raw_mode=True)
            for sid, seq, loc, _ts in chunk:
                wb.put(sid.encode() + key_s.pack(seq), loc.pack())
            t1 = time.perf_counter()
            db.write(wb)
            t2 = time.perf_counter()
            hot += t1 - t0
            commit += t2 - t1
        db.close()
        return hot, commit

    def ingest_pass(store: PartitionStore, offsets: list[int]) -> tuple[float, float]:
        """The ingest path per chunk: dedupe + add (hot), then one commit at its offset."""
        hot = commit = 0.0
        for chunk, offset in zip(chunks, offsets, strict=True):
            t0 = time.perf_counter()
            b = store.begin()
            seen, add = store.seen, b.add
            for sid, seq, loc, ts in chunk:
                if not seen(sid, seq):
                    add(sid, seq, loc, ts, "claude", "opus")
            t1 = time.perf_counter()
            b.commit(offset)
            t2 = time.perf_counter()
            hot += t1 - t0
            commit += t2 - t1
        return hot, commit

    def index(path: Path) -> tuple[float, float]:
        store = PartitionStore.open(path, 0)
        timings = ingest_pass(store, list(accumulate(map(len, chunks))))
        assert store.stats()["entries"] == n
        store.close()
        return timings

    def redelivery(path: Path) -> tuple[float, float]:
        store = PartitionStore.open(path, 0)
        for chunk in chunks:
            b = store.begin()
            for sid, seq, loc, ts in chunk:
                b.add(sid, seq, loc, ts, "claude", "opus")
            b.commit(0)
        timings = ingest_pass(store, [1] * len(chunks))
        store.close()
        return timings

    d_hot, _ = best(dict_baseline)
    r_hot, r_commit = best(rocks_baseline)
    i_hot, i_commit = best(index)
    x_hot, x_commit = best(redelivery)
    base = (r_hot + r_commit) / n * 1e6

    def us(sec: float) -> float:
        return sec / n * 1e6

    rows = [
        ("baseline dict insert", us(d_hot)),
        ("baseline rocksdict put+write", us(r_hot + r_commit)),
        ("index seen+add (hot path)", us(i_hot)),
        ("index commit (per event)", us(i_commit)),
        ("index total", us(i_hot + i_commit)),
        ("index redelivery (all dupes)", us(x_hot + x_commit)),
    ]
    print(f"{n} events, {args.sessions} sessions, batches of {bsize}")
    print(f"{'':32} {'µs/event':>9} {'vs rocksdict':>13}")
    for name, v in rows:
        print(f"{name:32} {v:9.3f} {v / base:12.2f}x")
    print(f"{'commit per batch (ms)':32} {i_commit / len(chunks) * 1e3:9.2f}")


if __name__ == "__main__":
    main()
