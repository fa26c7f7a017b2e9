"""Crash consistency under power loss: record the hot log's writes, cut power everywhere.

A partition ingests a fixed stream through the real `PartitionState` (hot log, checkpoint,
epoch file, RocksDB index, real fsyncs), while `powerloss.Recorder` records every write,
fsync and directory change. For crash points spread over the trace, every state a power cut
can leave there (`powerloss.crash_states`: unsynced writes dropped, holes, directory
changes lost, the index a commit behind) is opened and fed the stream again the way Kafka
would redeliver it: from the group's committed offset (everything acknowledged before the
cut) or from the partition's own watermark, whichever is lower. Then every event must be
in the hot log exactly once and read back once through the index.

`test_the_check_catches_fsync_turned_into_a_no_op` runs the same exploration with every
fsync of the hot log and of `workers.durable` made a no-op: it must find a state that loses
an acknowledged event.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.hotlog import powerloss
from tests.ingest.harness import event
from workers import durable
from workers.codec import batch
from workers.codec.event import decode_event
from workers.hotlog import RetentionPolicy, segment
from workers.hotlog import log as log_module
from workers.ingest.config import IngestConfig
from workers.ingest.epoch import Incarnation
from workers.ingest.partition import PartitionState

CONFIG = IngestConfig(segment_bytes=2048)
MESSAGES = 36
GROUP = 3  # messages per group commit
MAX_STATES = 160  # states opened per exploration (sampled with a fixed seed)
SEED = 12
#: what the broker reports after the cut (no broker here; the ids only need to be fixed)
POWER_CUT_BROKER = Incarnation("power-cut-cluster", "power-cut-topic")


def _stream() -> list[bytes]:
    rng = random.Random(SEED)
    seqs: Counter[str] = Counter()
    out = []
    for _ in range(MESSAGES):
        sid = rng.choice("abc")
        n = rng.randint(1, 3)
        events = [event(f"s-{sid}", seqs[sid] + j) for j in range(n)]
        seqs[sid] += n
        out.append(events[0] if n == 1 else batch.join(events))
    return out


def _keys(messages: list[bytes]) -> set[tuple[str, int]]:
    out = set()
    for m in messages:
        for data in batch.split(m) if batch.is_batch(m) else [m]:
            ev = decode_event(data)
            out.add((ev["session_id"], ev["seq"]))
    return out


async def _commit(state: PartitionState, rec: powerloss.Recorder) -> None:
    """A group commit, then the offset past it committed to the group (as the live feed
    does: only once the commit is done)."""
    await state.flush()
    if state.next_kafka_offset:
        rec.mark(powerloss.Ack(state.next_kafka_offset - 1))


def _record(
    tmp: Path,
    messages: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
    *,
    mutate: bool,
    config: IngestConfig = CONFIG,
) -> tuple[powerloss.Recorder, Path]:
    """Ingest ``messages`` under the recorder; return it and the partition directory.

    With a retention policy in ``config``, retention runs after every group commit.
    """
    directory = tmp / "live" / "kaizen.events-0"
    directory.mkdir(parents=True)
    snaps = tmp / "index-copies"
    snaps.mkdir()
    rec = powerloss.Recorder(directory, mutate_fsync=mutate)
    retention = config.retention.max_bytes is not None
    with monkeypatch.context() as mp:
        powerloss.install(rec, [segment, log_module, durable], mp)

        async def ingest() -> None:
            state = PartitionState(0, directory, config=config)
            state.open()
            state.store._db = powerloss.RecordingDb(
                state.store._db, directory / "index", snaps, rec
            )
            for i, value in enumerate(messages):
                state.process(i, value, b"k")
                if i % GROUP == GROUP - 1:
                    await _commit(state, rec)
                    if retention:
                        await state.enforce_retention()
            await _commit(state, rec)
            rec.enabled = False  # closing writes nothing a power cut could lose
            state.close()

        asyncio.run(ingest())
    return rec, directory


def _reopen_and_redeliver(
    directory: Path, messages: list[bytes], acked: int, config: IngestConfig = CONFIG
) -> PartitionState:
    """Open a crash state and feed it what Kafka would redeliver after the cut."""

    async def go() -> PartitionState:
        state = PartitionState(0, directory, config=config)
        state.open()
        committed = acked if acked else None
        if committed is None and state.has_local_data:
            # an epoch file with no broker ids recorded keeps the old rule (docs/OPERATIONS.md,
            # "Offsets that go back"): no committed offset and local data is a new incarnation
            state.new_epoch("power-loss test: the group committed nothing", POWER_CUT_BROKER)
        start = state.next_kafka_offset
        first = start if committed is None else min(start, committed)
        for i in range(first, len(messages)):
            state.process(i, messages[i], b"k")
        await state.flush()
        return state

    return asyncio.run(go())


def _violations(
    state: PartitionState, expected: set[tuple[str, int]], retention: bool = False
) -> list[str]:
    """What is wrong with the state after redelivery.

    With ``retention``, events may be gone with their segments; the index must then hold
    what the log holds from the oldest segment it points into on (a cut between the index
    deletes and the directory fsync may leave an expired segment file behind: unindexed,
    removed again by the next retention).
    """
    problems = []
    in_log: Counter[tuple[str, int]] = Counter()
    segment_of: dict[tuple[str, int], int] = {}
    for e in state.log.entries():
        ev = decode_event(e.payload)
        key = (ev["session_id"], ev["seq"])
        in_log[key] += 1
        segment_of[key] = e.location.segment
    lost = expected - in_log.keys()
    if lost and not retention:
        problems.append(f"lost from the hot log: {sorted(lost)[:4]}")
    dupes = [k for k, n in in_log.items() if n > 1]
    if dupes:
        problems.append(f"duplicated in the hot log: {sorted(dupes)[:4]}")
    indexed: Counter[tuple[str, int]] = Counter()
    oldest: int | None = None
    for sid in {s for s, _ in expected}:
        for _seq, loc in state.store.locations(sid):
            oldest = loc.segment if oldest is None else min(oldest, loc.segment)
        try:
            for seq, data in state.read_session(sid):
                assert decode_event(data)["seq"] == seq
                indexed[(sid, seq)] += 1
        except Exception as exc:
            problems.append(f"replay of {sid} fails: {exc!r}")
    if retention:
        floor = oldest if oldest is not None else state.log.last_segment_base or 0
        expected = {k for k in in_log if segment_of[k] >= floor}
    if indexed.keys() != expected and not any(p.startswith("replay") for p in problems):
        problems.append(f"index misses {sorted(expected - indexed.keys())[:4]}")
    return problems


def _picked(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, *, mutate: bool, config: IngestConfig
) -> tuple[str, list[powerloss.State]]:
    """Record the ingest; sample the power-loss states to open (half of them with a hole)."""
    rec, _live = _record(tmp, _stream(), monkeypatch, mutate=mutate, config=config)
    trace, inodes = rec.trace, rec.base_inodes()
    ops = trace.ops
    assert any(isinstance(op, powerloss.Ack) for op in ops)
    candidates = _states(trace, inodes)
    rng = random.Random(SEED)
    holes = [c for c in candidates if "lost" in c.label and "write" in c.label]
    rest = [c for c in candidates if c not in holes]
    picked = rng.sample(holes, min(len(holes), MAX_STATES // 2))
    picked += rng.sample(rest, min(len(rest), MAX_STATES - len(picked)))
    return trace.root, picked


def _states(trace: powerloss.Trace, inodes: dict[str, int]) -> list[powerloss.State]:
    """The distinct states of cuts just before each durability point (most is unsynced
    there), each ack and index write, and at the end."""
    ops = trace.ops
    points = [k for k, op in enumerate(ops) if isinstance(op, powerloss.Sync | powerloss.DirSync)]
    points += [k for k, op in enumerate(ops) if isinstance(op, powerloss.Ack | powerloss.Index)]
    points.append(len(ops))
    seen: set[str] = set()
    out: list[powerloss.State] = []
    for k in sorted(set(points)):
        for st in powerloss.crash_states(trace, inodes, k):
            h = hashlib.sha1(repr((sorted(st.files.items()), st.index, st.acked)).encode())
            if h.hexdigest() not in seen:
                seen.add(h.hexdigest())
                out.append(st)
    return out


def _open_and_check(
    st: powerloss.State, root: str, directory: Path, config: IngestConfig, name: str
) -> list[str]:
    """Materialize ``st``, recover it, redeliver, and list what is wrong."""
    messages = _stream()
    powerloss.materialize(st, root, directory, directory / "index")
    where = f"{name} ({st.label}, acked {st.acked})"
    try:
        state = _reopen_and_redeliver(directory, messages, st.acked, config)
    except Exception as exc:
        return [f"{where}: {exc!r}"]
    try:
        retention = config.retention.max_bytes is not None
        return [f"{where}: {p}" for p in _violations(state, _keys(messages), retention)]
    finally:
        state.close()


def _explore(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, *, mutate: bool, config: IngestConfig = CONFIG
) -> tuple[int, list[str]]:
    """Open sampled power-loss states; return (states opened, violations found)."""
    root, picked = _picked(tmp, monkeypatch, mutate=mutate, config=config)
    violations: list[str] = []
    directory = tmp / "crash" / "kaizen.events-0"
    for n, st in enumerate(picked):
        violations += _open_and_check(st, root, directory, config, f"state {n}")
        if mutate and violations:
            break
    return len(picked), violations


@pytest.mark.slow
def test_no_acknowledged_event_is_lost_or_duplicated_by_a_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened, violations = _explore(tmp_path, monkeypatch, mutate=False)
    assert opened >= 50
    assert not violations, f"{len(violations)} of {opened} states:\n" + "\n".join(violations[:10])


@pytest.mark.slow
def test_the_check_catches_fsync_turned_into_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _opened, violations = _explore(tmp_path, monkeypatch, mutate=True)
    assert violations, "no state lost anything although nothing was ever fsynced"


@pytest.mark.slow
def test_retention_survives_a_power_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention removes index entries, then files: after a cut the index never points into
    a removed segment (its deletes must be as durable as the removal)."""
    config = IngestConfig(segment_bytes=2048, retention=RetentionPolicy(max_bytes=4096))
    opened, violations = _explore(tmp_path, monkeypatch, mutate=False, config=config)
    assert opened >= 50
    assert not violations, f"{len(violations)} of {opened} states:\n" + "\n".join(violations[:10])


@pytest.mark.slow
def test_a_power_cut_during_recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CrashMonkey's second crash: cut the power again while a crash state recovers (log
    cut, checkpoint, removed segments), then recover from that and check the same way."""
    root, picked = _picked(tmp_path, monkeypatch, mutate=False, config=CONFIG)
    first = tmp_path / "first" / "kaizen.events-0"
    rng = random.Random(SEED)
    opened = 0
    violations: list[str] = []
    for n, st in enumerate(picked[:: max(1, len(picked) // 24)]):
        powerloss.materialize(st, root, first, first / "index")
        rec = powerloss.Recorder(first)
        with monkeypatch.context() as mp:
            powerloss.install(rec, [segment, log_module, durable], mp)
            state = PartitionState(0, first, config=CONFIG)
            state.open()  # recovery only; its index work (RocksDB, renames) is not recorded
            rec.enabled = False
            state.close()
        if not any(isinstance(op, powerloss.Sync) for op in rec.trace.ops):
            continue  # nothing to cut: recovery changed nothing durable
        # the index is the crash state's (a rebuild renames it in only after the log's fixes)
        again = _states(rec.trace, rec.base_inodes())
        for m, st2 in enumerate(rng.sample(again, min(len(again), 6))):
            second = powerloss.State(f"{st.label} / {st2.label}", st2.files, None, st.acked)
            opened += 1
            violations += _open_and_check(
                second,
                rec.trace.root,
                tmp_path / "second" / "kaizen.events-0",
                CONFIG,
                f"state {n}.{m}",
            )
    assert opened >= 20
    assert not violations, f"{len(violations)} of {opened} states:\n" + "\n".join(violations[:10])


def test_crash_states_model(tmp_path: Path) -> None:
    """The model itself: unsynced writes may be lost, holes read as zeros, synced data stays."""
    root = str(tmp_path)
    f = f"{root}/f"
    trace = powerloss.Trace(root, {})
    trace.ops = [
        powerloss.Create(f, 1),
        powerloss.Write(1, 0, b"aaaa"),
        powerloss.Sync(1),
        powerloss.DirSync(root),
        powerloss.Write(1, 4, b"bbbb"),
        powerloss.Write(1, 8, b"cccc"),
    ]
    states: dict[str, Any] = {
        s.label: s.files.get(f) for s in powerloss.crash_states(trace, {}, len(trace.ops))
    }
    contents = set(states.values())
    assert b"aaaabbbbcccc" in contents  # everything reached the disk
    assert b"aaaa" in contents  # unsynced data lost
    assert b"aaaa" + bytes(8) in contents  # sizes kept, data lost
    assert b"aaaa" + bytes(4) + b"cccc" in contents  # a hole: a later write kept
    assert all(c is not None and c.startswith(b"aaaa") for c in contents)
    # before the directory fsync the file may not exist at all
    early = {s.files.get(f) for s in powerloss.crash_states(trace, {}, 2)}
    assert None in early and b"aaaa" in early
