"""Session summaries in the worker: folded once from the durable log, through crashes.

Real parts: PartitionState with its hot log and RocksDB index, a real
SummaryStore, processes killed with SIGKILL, and a real worker on a real broker.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict

from tests.analytics.test_aggregate import comparable
from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import (
    end_offsets,
    produce_in_slices,
    start_worker,
    wait_committed,
    wait_owned,
)
from workers.analytics.aggregate import FOLD_STATE, SessionSummary, fold_all
from workers.analytics.digest import StatsRow, digest
from workers.analytics.store import (
    FOLD_KEY,
    ROLLUP,
    ROLLUP_END,
    ROW,
    ROW_END,
    ROWS_KEY,
    SummaryStore,
)
from workers.analytics.views import GROUP_KEYS, Rollup, active_since, rollup_rows
from workers.codec import batch
from workers.codec.event import complete_event, encode_event
from workers.hooks.samples import sample_events
from workers.ingest.partition import PartitionState
from workers.settings import EVENTS_TOPIC

ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000


def opened(directory: Path) -> PartitionState:
    state = PartitionState(0, directory)
    state.open()
    return state


def ingest(state: PartitionState, messages: list[bytes], first_offset: int = 0) -> None:
    async def go() -> None:
        for i, value in enumerate(messages):
            state.process(first_offset + i, value, b"k")
        await state.flush()

    asyncio.run(go())


def sample_messages() -> list[bytes]:
    return [encode_event(complete_event(e)) for e in sample_events()]


def public(s: SessionSummary) -> dict[str, Any]:
    d = comparable(s)
    for name in FOLD_STATE:  # kept apart, not what readers get (SessionSummary.split_bytes)
        del d[name]
    return d


def nonzero(r: Rollup) -> Rollup:
    return Rollup(
        {k: v for k, v in r.homes.items() if any(v)}, {k: v for k, v in r.buckets.items() if any(v)}
    )


def summaries(store: SummaryStore) -> dict[str, dict[str, Any]]:
    """Every summary; and every session's stats row is the digest of its summary."""
    found = list(store.all())
    assert {r.session_id: r for r in store.rows()} == {s.session_id: digest(s) for s in found}
    for by in GROUP_KEYS:  # the stored rollups count every row exactly once
        assert nonzero(store.rollup(by)) == nonzero(rollup_rows(map(digest, found), by)), by
    assert_since_equals_rows(store)
    return {s.session_id: public(s) for s in found}


def thresholds(rows: list[StatsRow]) -> list[int]:
    """--since instants that cut every stored day: at, just after and just before each
    session's last activity, its day's midnight, and before and after everything."""
    out = {0, 10**15}
    for r in rows:
        t = r.last_ts or 0
        out |= {t, t + 1, max(t - 1, 0), t - t % DAY_MS, t - t % DAY_MS + DAY_MS}
    return sorted(out)


def assert_since_equals_rows(store: SummaryStore) -> None:
    """`stats --since` from the day-keyed rollups equals the row path, for every grouping
    and every cut through the stored days."""
    rows = list(store.rows())
    for since in thresholds(rows):
        active = [r for r in rows if active_since(r.last_ts, since)]
        for by in GROUP_KEYS:
            got = nonzero(store.rollup_since(by, since))
            assert got == nonzero(rollup_rows(active, by)), (by, since)


def expected() -> dict[str, dict[str, Any]]:
    return {sid: public(s) for sid, s in fold_all(sample_events()).items()}


def test_fold_equals_the_pure_fold_and_redelivery_changes_nothing(tmp_path: Path) -> None:
    state = opened(tmp_path)
    messages = sample_messages()
    ingest(state, messages)
    assert state.fold_summaries(10**6) == len(messages)
    assert state.summaries is not None
    assert summaries(state.summaries) == expected()
    for sid, s in fold_all(sample_events()).items():  # the fold state is kept for the next fold
        got = state.summaries.get(sid)
        assert (
            got is not None
            and got.seqs == s.seqs
            and not any(x.seqs for x in state.summaries.all())
        )
    # the same events again, as a shipper retry: deduped before the log, nothing to fold
    ingest(state, [batch.join(messages[:20]), *messages[20:]], first_offset=len(messages))
    assert state.fold_summaries(10**6) == 0
    assert summaries(state.summaries) == expected()
    state.close()


def test_a_store_folded_by_another_fold_is_folded_again(tmp_path: Path) -> None:
    state = opened(tmp_path)
    ingest(state, sample_messages())
    state.fold_summaries(10**6)
    assert state.summaries is not None
    path = state.summaries.path
    state.close()
    db = Rdict(str(path), Options(raw_mode=True))
    wrong = next(iter(fold_all(sample_events()).values()))
    wrong.tool_calls = {"Bash": 999}  # what an older fold might have made of it
    db[b"\x01" + wrong.session_id.encode()] = wrong.split_bytes()[0]
    del db[FOLD_KEY]  # a store from before FOLD_VERSION
    db.close()
    state = opened(tmp_path)
    assert state.summaries is not None and state.summaries.cursor is None
    state.fold_summaries(10**6)
    assert summaries(state.summaries) == expected()
    state.close()


def test_folding_in_slices_across_reopens(tmp_path: Path) -> None:
    state = opened(tmp_path)
    ingest(state, sample_messages())
    state.close()
    total = 0
    while True:
        state = opened(tmp_path)
        n = state.fold_summaries(7)
        total += n
        state.close()
        if n == 0:
            break
    assert total == len(sample_events())
    store = SummaryStore.open(tmp_path)
    assert summaries(store) == expected()
    store.reset()  # rebuildable: refold from the log
    assert store.cursor is None and not list(store.all()) and not list(store.rows())
    store.close()
    state = opened(tmp_path)
    state.fold_summaries(10**6)
    assert state.summaries is not None and summaries(state.summaries) == expected()
    state.close()


def folded_samples(tmp_path: Path) -> tuple[SummaryStore, dict[str, dict[str, Any]]]:
    """A store holding the samples' summaries, and those summaries."""
    state = opened(tmp_path)
    ingest(state, sample_messages())
    state.fold_summaries(10**6)
    state.close()
    store = SummaryStore.open(tmp_path)
    return store, summaries(store)


def test_a_store_without_rows_gets_rows_and_rollups_when_opened_for_writing(tmp_path: Path) -> None:
    store, want = folded_samples(tmp_path)
    store._db.delete_range(ROW, ROW_END)  # as written before stats rows and rollups existed
    store._db.delete_range(ROLLUP, ROLLUP_END)
    store._db.delete(ROWS_KEY)
    store.close()
    reader = SummaryStore.open(tmp_path, read_only=True)
    assert summaries(reader) == want  # derived from the summaries meanwhile
    reader.close()
    store = SummaryStore.open(tmp_path)
    assert store._db.get(ROWS_KEY) is not None
    assert len(list(store._range(ROW, ROW_END))) == len(want)
    assert len(list(store._range(ROLLUP, ROLLUP_END))) > len(GROUP_KEYS)
    assert summaries(store) == want
    store.close()


def synthetic(sid: str, last_ts: int, model: str, tokens: int) -> SessionSummary:
    s = SessionSummary(sid, agent="claude")
    s.first_ts, s.last_ts = last_ts - 60_000, last_ts
    s.host = "dev-1"
    s.usage[f"{model}\t{time.strftime('%Y-%m-%d', time.gmtime(last_ts / 1000))}\tS"] = [
        tokens,
        tokens // 2,
        0,
        tokens * 3,
    ]
    s.events = {"tool_call": 3}
    s.tool_calls = {"Bash": 3}
    return s


def test_since_follows_sessions_across_days_as_they_are_updated(tmp_path: Path) -> None:
    """A session's later activity moves it from its old last day to its new one (the
    day-keyed rollups and the last-day index are kept in the summary's batch)."""
    store = SummaryStore.open(tmp_path)
    t0 = 1_760_000_000_000 - 1_760_000_000_000 % DAY_MS + 3_600_000  # 01:00 UTC
    found = {
        f"s{i}": synthetic(
            f"s{i}", t0 + (i % 4) * DAY_MS + i * 60_000, "claude-sonnet-4-5", 100 + i
        )
        for i in range(12)
    }
    store._db.write(store.batch(found.values()))
    summaries(store)
    # s1 (day 1) becomes active on day 3 and s6 (day 2) later the same day, s3 moves on
    # to day 5 with another model; each write goes through the batch the worker writes
    for sid, later, model in (
        ("s1", 2 * DAY_MS, "claude-opus-4-1"),
        ("s6", 3_600_000, "claude-sonnet-4-5"),
        ("s3", 2 * DAY_MS, "gpt-5.1-codex"),
    ):
        s = found[sid]
        s.last_ts = (s.last_ts or 0) + later
        s.usage[f"{model}\t{time.strftime('%Y-%m-%d', time.gmtime(s.last_ts / 1000))}\tS"] = [
            7,
            8,
            9,
            10,
        ]
        s.events["tool_call"] += 1
        store._db.write(store.batch([s]))
        summaries(store)
    # the old days no longer hold the moved sessions: a since just after day 2 starts
    day2 = t0 - 3_600_000 + 2 * DAY_MS
    got = store.rollup_since("model", day2)
    assert sum(v[0] for v in got.homes.values()) == sum(
        1 for s in found.values() if (s.last_ts or 0) >= day2
    )
    store.close()
    # and a read-only reader (what the command opens) sees the same
    assert nonzero(SummaryStore.read_rollup_since(tmp_path, "day", day2)) == nonzero(
        rollup_rows([digest(s) for s in found.values() if (s.last_ts or 0) >= day2], "day")
    )


def test_rows_of_another_layout_are_rebuilt_not_misread(tmp_path: Path) -> None:
    store, want = folded_samples(tmp_path)
    sid = next(iter(want)).encode()
    store._db.put(ROW + sid, b'[0,"an older layout"]')
    store._db.put(ROLLUP + b"model\x00h\x00stale", b"[1,2,3,4,5]")
    store._db.put(ROWS_KEY, b"0")
    store.close()
    reader = SummaryStore.open(tmp_path, read_only=True)
    assert summaries(reader) == want
    reader.close()
    store = SummaryStore.open(tmp_path)
    assert summaries(store) == want and "stale" not in store.rollup("model").homes
    store.close()


FOLDER = """
import sys, time
from pathlib import Path
from workers.ingest.partition import PartitionState
state = PartitionState(0, Path(sys.argv[1]))
state.open()
print("open", flush=True)
while state.fold_summaries(3):
    time.sleep(0.002)
print("done", flush=True)
state.close()
"""


def test_kill_dash_nine_while_folding(tmp_path: Path) -> None:
    state = opened(tmp_path)
    ingest(state, sample_messages() * 1)
    state.close()
    rng = random.Random(3)
    kills = 0
    for _ in range(30):
        proc = subprocess.Popen(
            [sys.executable, "-c", FOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"open\n"
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
    state = opened(tmp_path)
    state.fold_summaries(10**6)
    assert state.summaries is not None
    assert summaries(state.summaries) == expected()
    state.close()
    assert kills >= 10  # most runs died mid-way


def event(sid: str, seq: int) -> bytes:
    kind = ["tool_call", "tool_result", "message", "cost"][seq % 4]
    fields: dict[str, Any] = {
        "session_id": sid,
        "seq": seq,
        "ts_ms": 1_760_000_000_000 + seq * 1000,
        "agent": "claude",
        "kind": kind,
        "tool": "Bash" if kind.startswith("tool") else None,
        "model": "claude-sonnet-4-5-20250929",
    }
    if kind == "cost":
        fields.update(tokens_in=1, tokens_out=2)
    return encode_event(complete_event(fields))


def read_summaries(data: Path) -> dict[str, SessionSummary]:
    out: dict[str, SessionSummary] = {}
    for p in range(TEST_PARTITIONS):
        d = data / "hotlog" / f"{EVENTS_TOPIC}-{p}"
        if (d / "summaries").is_dir():
            store = SummaryStore.open(d, read_only=True)
            try:
                out.update({s.session_id: s for s in store.all()})
            finally:
                store.close()
    return out


def test_worker_summaries_survive_kill_dash_nine(fresh_broker: Broker, tmp_path: Path) -> None:
    rng = random.Random(11)
    bootstrap = fresh_broker.bootstrap
    counts = {f"agg-{s}": rng.randrange(40, 200) for s in range(40)}
    messages: list[tuple[str, bytes]] = []
    for sid, n in counts.items():
        seqs = list(range(n)) + list(range(rng.randrange(0, 10)))  # some resent
        for i in range(0, len(seqs), 16):
            messages.append((sid, batch.join([event(sid, q) for q in seqs[i : i + 16]])))
    rng.shuffle(messages)  # sessions interleave; a session's order does not matter to a fold
    data = tmp_path / "data"
    feeder = produce_in_slices(bootstrap, messages, 10)
    try:
        for _ in range(2):
            worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w.log")
            time.sleep(rng.uniform(5.0, 8.0))
            worker.kill()
    finally:
        feeder.join()
    worker = start_worker(bootstrap, data, TEST_PARTITIONS, tmp_path / "w.log")
    try:
        # serving first: on Apache Kafka the killed workers may have committed everything
        # already, and a worker stopped while it starts exits by the signal, not cleanly
        wait_owned([worker], TEST_PARTITIONS)
        ends = asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS))
        wait_committed(bootstrap, ends, timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = read_summaries(data)
            if sum(s.event_count for s in got.values()) >= sum(counts.values()):
                break
            time.sleep(0.5)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_text()[-3000:]
    got = read_summaries(data)
    assert set(got) == set(counts)
    for sid, n in counts.items():
        s = got[sid]
        assert s.event_count == n, f"{sid}: {s.event_count} of {n}"
        assert s.tool_calls == {"Bash": (n + 3) // 4}
        k = n // 4  # seqs 3, 7, 11, ... are cost events
        assert s.tokens == ({"in": k, "out": 2 * k} if k else {})
