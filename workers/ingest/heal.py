"""Healing damaged hot-log frames from the source topic (kaizen.events).

kaizen.events keeps every message (docs/OPERATIONS.md, retention), and every
frame carries the Kafka offset of its message. A frame that fails its CRC
cannot be read, and its own offset field cannot be trusted, but the good
frames around it bound it: offsets never decrease along the log, so the
damaged frame came from a message between the offset of the last good frame
before it and that of the first good frame after it (`span_of`). Healing
re-reads the source messages of that span (`fetch`), keeps every event the
index cannot read back (an entry pointing at a damaged frame, or no entry at
all after an index rebuild skipped the frame; `unreadable`), and appends
those again with their new locations committed to the index (`apply`).

Invariants:

* healed frames go to the end of the log and are fsynced before their index
  entries are committed (invariant 4); their frame offset is the log's last
  offset at healing time, not their source offset, because offsets never
  decrease along the log. The watermark does not move, and an index rebuild
  keeps the first readable copy of each (session, seq): the healed one;
* only events without a readable frame are appended, so healing again appends
  nothing, and no (session, seq) is ever readable twice;
* a heal that leaves no problem records the bad ranges it covered in the
  partition's `healed` file (`workers.hotlog.verify.mark_healed`), so
  `verify` reports them healed rather than as damage that remains;
* a span of an older epoch (a previous broker incarnation, below the epoch
  base) cannot be healed from the source, which holds other data at those
  offsets: it is reported, never guessed; nor can offsets the topic's
  retention already deleted; nor, for a stopped worker's directory, any span
  when the broker reports another cluster or topic id than the epoch recorded
  (the topic was made again since: `source_base`);
* `apply` runs as the log's and index's single writer: `heal_state` (a
  worker's partition) holds the partition's lock after a group commit, so no
  index batch is open; `heal_directory` (`verify --repair`) holds the
  directory's lock; `span_of`, `collect` and `fetch` only read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition

from workers.broker.cluster import incarnation
from workers.hotlog import BadRange, CorruptFrame, Location, PartitionLog
from workers.hotlog.segment import HEADER_SIZE
from workers.hotlog.verify import mark_healed
from workers.ingest import epoch as epochs
from workers.ingest.decode import Decoded, LeanDecoder
from workers.ingest.epoch import Epoch
from workers.ingest.partition import PartitionState
from workers.kafka import clients
from workers.state import PartitionStore

log = logging.getLogger(__name__)

#: an epoch base past every log offset: every span predates it
NO_OFFSET = 1 << 62
FETCH_STALL_S = 30.0  # give up on a span when the source yields nothing for this long


@dataclass(frozen=True, slots=True)
class Span:
    """Log offsets ``lo..hi`` (inclusive) whose source messages may hold damaged frames."""

    lo: int
    hi: int


@dataclass
class HealReport:
    spans: list[Span] = field(default_factory=list)
    ranges: list[BadRange] = field(default_factory=list)  # the bad ranges the spans cover
    healed: list[tuple[str, int]] = field(default_factory=list)  # (session, seq) appended again
    problems: list[str] = field(default_factory=list)  # spans (or parts) not healed, and why

    @property
    def complete(self) -> bool:
        return not self.problems


def span_of(
    log_: PartitionLog, segment: int, position: int, ranges: list[BadRange] | None = None
) -> Span:
    """The log offsets that may hold the damaged bytes at ``position`` of ``segment``.

    The bad range holding ``position`` is added to ``ranges`` when given.
    """
    lo = segment  # a segment is named by the offset of its first frame
    hi: int | None = None

    def met(rng: BadRange) -> None:
        if ranges is not None and rng.segment == segment and rng.start <= position < rng.end:
            ranges.append(rng)

    for entry in log_.entries(Location(segment, HEADER_SIZE, 0), on_bad=met):
        if entry.location.segment != segment or entry.location.position > position:
            hi = entry.offset
            break
        lo = entry.offset
    if hi is None:
        last = log_.last_offset
        hi = lo if last is None else max(lo, last)
    return Span(lo, hi)


def merge(spans: Iterable[Span]) -> list[Span]:
    """Overlapping or touching spans joined, in offset order."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.lo, s.hi)):
        if out and span.lo <= out[-1].hi + 1:
            out[-1] = Span(out[-1].lo, max(out[-1].hi, span.hi))
        else:
            out.append(span)
    return out


def unreadable(
    log_: PartitionLog, store: PartitionStore, events: Iterable[Decoded]
) -> list[Decoded]:
    """The events (first copy of each (session, producer, seq)) the index cannot read back."""
    out: list[Decoded] = []
    seen: set[tuple[str, int, str]] = set()
    for ev in events:
        key = (ev.session_id, ev.seq, ev.producer)
        if key in seen:
            continue
        seen.add(key)
        loc = store.location(*key)
        if loc is not None:
            try:
                log_.read(loc)
                continue
            except CorruptFrame:
                pass
        out.append(ev)
    return out


def apply(log_: PartitionLog, store: PartitionStore, events: Sequence[Decoded]) -> int:
    """Append `events` again, fsync, then index them (watermark unchanged); returns how many.

    The caller is the single writer of the log and the index (see the module doc).
    """
    if not events:
        return 0
    last = log_.last_offset
    assert last is not None, "healing an empty log"
    locations = log_.append_batch([ev.data for ev in events], last)
    log_.flush()
    batch = store.begin()
    try:
        for ev, loc in zip(events, locations, strict=True):
            batch.add(ev.session_id, ev.seq, loc, ev.ts_ms, ev.agent, ev.model, ev.producer)
        batch.commit(store.watermark)
    finally:
        if not batch.closed:
            batch.abort()
    return len(events)


async def fetch(
    bootstrap: clients.Target, topic: str, partition: int, first: int, last: int
) -> tuple[list[bytes | None], int]:
    """Values of the source messages at Kafka offsets ``first..last``, and the first offset read.

    The first offset read is above ``first`` when retention deleted the start of the span.
    """
    tp = TopicPartition(topic, partition)
    consumer = clients.new_consumer(
        bootstrap,
        role="heal",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes | None] = []
    try:
        consumer.assign([tp])
        earliest = (await consumer.beginning_offsets([tp]))[tp]
        start = max(first, earliest)
        consumer.seek(tp, start)
        position = start
        progress = time.monotonic()
        while position <= last:
            got = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            records = got.get(tp, [])
            if not records:
                if time.monotonic() - progress > FETCH_STALL_S:
                    raise TimeoutError(f"{topic}-{partition}: nothing at offset {position}")
                continue
            progress = time.monotonic()
            for rec in records:
                if rec.offset > last:
                    position = rec.offset
                    break
                values.append(rec.value)
                position = rec.offset + 1
    finally:
        await consumer.stop()
    return values, start


async def collect(
    log_: PartitionLog,
    epoch_base: int,
    decoder: LeanDecoder,
    damaged: Iterable[tuple[int, int]],
    *,
    bootstrap: clients.Target,
    topic: str,
    report: HealReport,
) -> list[Decoded]:
    """Every event of the source messages around the damaged (segment, position)s.

    Reads only (the log and the source topic); what cannot be healed goes to `report`.
    """
    loop = asyncio.get_running_loop()
    found: list[BadRange] = []
    spans = merge(
        [
            await loop.run_in_executor(None, span_of, log_, seg, pos, found)
            for seg, pos in set(damaged)
        ]
    )
    report.ranges.extend(dict.fromkeys(found))
    report.spans.extend(spans)
    events: list[Decoded] = []
    for span in spans:
        if span.hi < epoch_base:
            report.problems.append(
                f"log offsets {span.lo}..{span.hi} predate the broker incarnation the worker "
                "reads now: the source no longer holds them"
            )
            continue
        first, last = max(span.lo, epoch_base) - epoch_base, span.hi - epoch_base
        if span.lo < epoch_base:
            report.problems.append(
                f"log offsets {span.lo}..{epoch_base - 1} predate the current broker incarnation"
            )
        try:
            values, start = await fetch(bootstrap, topic, log_.partition, first, last)
        except (TimeoutError, OSError) as exc:
            report.problems.append(f"offsets {first}..{last} of {topic}: {exc}")
            continue
        except Exception as exc:  # a KafkaError: unreachable broker, unknown topic, ...
            report.problems.append(
                f"offsets {first}..{last} of {topic}: {type(exc).__name__} "
                f"(is the broker at {clients.connection(bootstrap).servers} reachable?)"
            )
            continue
        if start > first:
            report.problems.append(
                f"offsets {first}..{start - 1} of {topic} were deleted by its retention"
            )
        for value in values:
            events.extend(decoder.message(value).events)
    return events


async def heal_state(
    state: PartitionState, damaged: Iterable[tuple[int, int]], *, bootstrap: clients.Target
) -> HealReport:
    """Heal a worker's ready partition: read without its lock, append under it."""
    report = HealReport()
    events = await collect(
        state.log,
        state.epoch.base,
        state.decoder,
        damaged,
        bootstrap=bootstrap,
        topic=state.topic,
        report=report,
    )
    loop = asyncio.get_running_loop()
    async with state.lock:
        if state.closed:
            report.problems.append("the partition was closed (assigned elsewhere)")
            return report
        await state.flush()  # commits the pending batch: none is open while healing

        def run() -> None:
            todo = unreadable(state.log, state.store, events)
            apply(state.log, state.store, todo)
            report.healed.extend((ev.session_id, ev.seq) for ev in todo)

        await loop.run_in_executor(None, run)
    if report.complete and report.ranges:
        mark_healed(state.directory, report.ranges)
    return report


async def source_base(
    epoch: Epoch, bootstrap: clients.Target, topic: str, report: HealReport
) -> int:
    """The epoch base to heal a stopped worker's partition with: its own, unless the broker
    now reports another incarnation of `topic` than the epoch recorded (then one no offset
    reaches: every span predates what the source holds, and the reason is reported). A
    broker that cannot be asked leaves the base as it is: the fetch then says why."""
    try:
        now = await asyncio.wait_for(incarnation(bootstrap, topic), 30)
    except Exception:  # unreachable, refused: the fetch reports it in one line
        return epoch.base
    reason = epochs.went_back(epoch, now, end=None, next_offset=0, group_forgot=False)
    if reason is None:
        return epoch.base
    report.problems.append(
        f"{reason}: {topic} holds another incarnation since this log was written"
    )
    return NO_OFFSET


async def heal_directory(
    directory: Path,
    topic: str,
    partition: int,
    damaged: Iterable[tuple[int, int]],
    *,
    bootstrap: clients.Target,
) -> HealReport:
    """Heal a partition directory no worker holds (``verify --repair``); the report says what.

    Opens the log (recovering it) and the index (rebuilt when it disagrees with the log),
    reads the epoch base, and heals the damaged (segment, position)s from `topic`.
    """
    from workers.state.rebuild import index_matches_log, rebuild_partition
    from workers.state.store import FormatMismatch

    report = HealReport()
    with PartitionLog.open(directory, topic=topic, partition=partition) as log_:
        try:
            store = PartitionStore.open(directory, partition)
        except FormatMismatch:
            store = rebuild_partition(directory, partition, log_)
        if not index_matches_log(store, log_):
            store.close()
            store = rebuild_partition(directory, partition, log_)
        try:
            events = await collect(
                log_,
                await source_base(epochs.load(directory), bootstrap, topic, report),
                LeanDecoder(),
                damaged,
                bootstrap=bootstrap,
                topic=topic,
                report=report,
            )
            todo = unreadable(log_, store, events)
            apply(log_, store, todo)
            report.healed.extend((ev.session_id, ev.seq) for ev in todo)
        finally:
            store.close()
    return report
