"""The worker side of replay: answer one request by republishing a session from the hot log.

`ReplayService` owns one aiokafka producer (acks=all, not idempotent: tansu)
shared by every replay and by the web views, a small thread pool for the
blocking hot-log reads, and the set of running replay tasks.

Invariants:

* each request runs as its own asyncio task, so replays of different sessions
  run concurrently and the request agent never waits for a replay; the reads
  happen in chunks in the thread pool, so ingest on the event loop never waits
  for replay I/O either;
* events go out in seq order (the index order of `read_session`), all to the
  one partition of the target topic that the session id hashes to, followed by
  exactly one end marker on that same partition (`formats`); every request
  gets its end marker: ok, not_found (count 0) or error;
* a request that cannot be decoded or is invalid goes to the dead-letter topic
  with its reason in headers; nothing a requester sends stops the agent;
* replies never go to kaizen.events, the request topic or the DLQ;
* each request id is answered once by this worker, whichever path (agent or
  fast path) sees it first, error answers included;
* a request naming a target it may not use (`formats.check_target`), or none,
  is answered at once with an error end marker on kaizen.replay;
* a damaged frame never hides the rest of its session: every readable event
  is sent, and the end marker says `partial` and names the missing seqs; a
  background task then heals them from kaizen.events (`workers.ingest.heal`,
  one heal at a time per partition, under the partition's lock), so a later
  replay is complete;
* request age: a request that reached its partition after this worker began
  following it (offset at or past where the fast path started) is always
  answered, whatever the sender's clock says; an older one (a backlog met
  after a restart, a rebalance or by a new consumer group, whose requesters
  may be long gone) is skipped when its Kafka record timestamp is more than
  MAX_REQUEST_AGE old. The request topic is created with
  message.timestamp.type=LogAppendTime, so on Apache Kafka that timestamp is
  the broker's; the embedded broker keeps the producer's (CreateTime).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from workers.codec.errors import DecodeError
from workers.hotlog import CorruptFrame, Location
from workers.ingest import heal
from workers.ingest.dlq import dead_letter
from workers.kafka import clients
from workers.replay import formats, pacing
from workers.replay.formats import ReplayRequest, SeqChecksum
from workers.replay.interfaces import ManagerLike
from workers.settings import DLQ_TOPIC, REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC

log = logging.getLogger(__name__)

MAX_REMEMBERED = 100_000  # request ids remembered for the dedupe of the two paths
MAX_REQUEST_AGE = 300.0  # seconds: older requests (by Kafka timestamp) are not answered
CHUNK = 1000  # events read per trip to the thread pool
READY_TIMEOUT = 120.0  # how long a request waits for its partition to catch up


def _take(it: Iterator[tuple[int, bytes]], n: int) -> list[tuple[int, bytes]]:
    return list(itertools.islice(it, n))


def readable_events(
    state: Any,
    session_id: str,
    from_seq: int | None,
    to_seq: int | None,
    missing: list[tuple[int, Location]],
) -> Iterator[tuple[int, bytes]]:
    """(seq, event bytes) of the session in seq order, through the index, skipping what
    cannot be read: each damaged frame (CRC, short read, segment gone) lands in `missing`."""
    read = state.log.read
    for seq, loc in state.store.locations(session_id, from_seq, to_seq):
        try:
            data = read(loc)
        except CorruptFrame:
            missing.append((seq, loc))
            continue
        yield seq, data


class ReplayService:
    def __init__(
        self,
        bootstrap: clients.Target,
        manager: ManagerLike,
        *,
        ready_timeout: float = READY_TIMEOUT,
        max_concurrent: int = 32,
        max_age_s: float = MAX_REQUEST_AGE,
        target_prefix: str = "",
    ) -> None:
        self.max_age_s = max_age_s
        self.target_prefix = target_prefix
        self.bootstrap = bootstrap
        self.manager = manager
        self.ready_timeout = ready_timeout
        self._producer: AIOKafkaProducer | None = None
        self._start_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kaizen-replay")
        self._partitioner = DefaultPartitioner()
        self.answered = 0
        self._answers = 0
        self._instance = uuid.uuid4().hex[:8]
        self._started: OrderedDict[str, None] = OrderedDict()
        self._live_from: dict[int, int] = {}  # request partition -> first offset read live
        self._healing: set[int] = set()  # partitions with a heal under way
        self.healed = 0  # events appended again by heals (tests, logs)

    # -- lifecycle -----------------------------------------------------------------

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._producer is None:
                self._producer = await clients.start_producer(
                    self.bootstrap,
                    "replay",
                    linger_ms=2,
                    max_batch_size=1 << 20,
                    max_request_size=8 << 20,
                )
        return self._producer

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- requests ------------------------------------------------------------------

    async def handle(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        offset: int | None = None,
        fast: bool = False,
        timestamp_ms: int | None = None,
    ) -> ReplayRequest | None:
        """Decode one request and start answering it; bad ones go to the DLQ. Never raises.

        `fast` marks the low-latency path (`run_fast_path`): it leaves the dead-lettering
        to the Faust agent, which sees every request. A request id already answered or
        started (by either path) is not answered again.
        """
        try:
            request = formats.decode_request(value, self.target_prefix)
        except formats.InvalidRequest as exc:
            # It decoded, so someone waits for an answer: tell them at once, on the
            # default topic (every client listens there for this), by either path.
            if not fast:
                await self._dead_letter(value, key, exc.reason, exc.detail, partition, offset)
            with contextlib.suppress(Exception):
                record = formats.request_codec().decode(value or b"")
                request_id = str(record.get("request_id", ""))
                if request_id and self._claim(request_id):
                    await self._send_end(
                        REPLAY_TOPIC,
                        str(record.get("session_id", "")),
                        request_id,
                        formats.STATUS_ERROR,
                        SeqChecksum(),
                        f"{exc.reason}: {exc.detail}",
                        self._replier(),
                    )
                    self.answered += 1
            return None
        except DecodeError as exc:
            if not fast:
                await self._dead_letter(value, key, exc.reason, exc.detail, partition, offset)
            return None
        except Exception as exc:  # never let a request kill the agent
            if not fast:
                await self._dead_letter(value, key, "error", repr(exc), partition, offset)
            return None
        if request.request_id in self._started:
            return None
        if self._too_old(partition, offset, timestamp_ms):
            log.info("replay request %s is too old, skipped", request.request_id)
            return None
        self._claim(request.request_id)
        self.start(request)
        return request

    def _claim(self, request_id: str) -> bool:
        """Mark `request_id` as answered by this worker; False if it already was."""
        if request_id in self._started:
            return False
        self._started[request_id] = None
        while len(self._started) > MAX_REMEMBERED:
            self._started.popitem(last=False)
        return True

    def _too_old(self, partition: int | None, offset: int | None, timestamp_ms: int | None) -> bool:
        """A backlog request older than max_age_s by its record timestamp (see the module doc)."""
        if timestamp_ms is None:
            return False
        if partition is not None and offset is not None:
            live_from = self._live_from.get(partition)
            if live_from is not None and offset >= live_from:
                return False  # it arrived while this worker followed the partition
        return timestamp_ms < now_ms() - self.max_age_s * 1000

    def _replier(self) -> str:
        self._answers += 1
        return f"{self._instance}-{self._answers}"

    async def run_fast_path(self) -> None:
        """Read the requests of the partitions this worker owns with a short fetch wait.

        Faust's worker consumer long-polls with a fixed 1.5 s fetch wait, and tansu
        holds a fetch for the whole wait even when data arrives, so a request
        reaching the agent waits 0.75 s on average. This group-less consumer (20 ms
        fetch wait) follows the same partitions from their end and starts requests
        at once; the agent still sees every request (commits, dead letters, and
        anything from before this consumer was positioned), and the request id
        dedupe makes sure each request is answered once by this worker.
        """
        consumer = clients.new_consumer(
            self.bootstrap,
            role="replay",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        try:
            assigned: set[int] = set()
            while True:
                owned = {p for p in self.manager.owned() if self.manager.get(p) is not None}
                if owned != assigned:
                    kept = {}
                    for p in owned & assigned:
                        tp = TopicPartition(REPLAY_REQUESTS_TOPIC, p)
                        kept[tp] = await consumer.position(tp)
                    tps = [TopicPartition(REPLAY_REQUESTS_TOPIC, p) for p in sorted(owned)]
                    consumer.assign(tps)
                    for tp in tps:
                        if tp in kept:
                            consumer.seek(tp, kept[tp])
                        else:
                            await consumer.seek_to_end(tp)
                            self._live_from[tp.partition] = await consumer.position(tp)
                    for p in assigned - owned:
                        self._live_from.pop(p, None)
                    assigned = owned
                if not assigned:
                    await asyncio.sleep(0.2)
                    continue
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        await self.handle(
                            record.value,
                            key=record.key,
                            partition=record.partition,
                            offset=record.offset,
                            fast=True,
                            timestamp_ms=record.timestamp,
                        )
        finally:
            await consumer.stop()

    def start(self, request: ReplayRequest) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _answer(self, request: ReplayRequest) -> None:
        checksum = SeqChecksum()
        replier = self._replier()
        missing: list[tuple[int, Location]] = []
        async with self._slots:
            try:
                status = await self._replay(request, checksum, replier, missing)
                error = ""
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                status = formats.STATUS_ERROR
                error = f"partition not ready within {self.ready_timeout:.0f}s"
            except Exception as exc:
                log.exception("replay %s of %s failed", request.request_id, request.session_id)
                status = formats.STATUS_ERROR
                error = f"{type(exc).__name__}: {exc}"
            try:
                await self._send_end(
                    request.target_topic,
                    request.session_id,
                    request.request_id,
                    status,
                    checksum,
                    error,
                    replier,
                    [seq for seq, _ in missing],
                )
            except Exception:
                log.exception("end marker of replay %s not sent", request.request_id)
            self.answered += 1

    async def _replay(
        self,
        request: ReplayRequest,
        checksum: SeqChecksum,
        replier: str,
        missing: list[tuple[int, Location]],
    ) -> str:
        partition = self.manager.partition_for(request.session_id)
        state = await self.manager.wait_ready(partition, timeout=self.ready_timeout)
        info = state.store.session(request.session_id)
        if info is None:
            return formats.STATUS_NOT_FOUND
        producer = await self.producer()
        topic = request.target_topic
        key = request.session_id.encode()
        target = await self._partition_of(topic, key)
        total = _expected(info, request)
        by_time = request.from_ts_ms is not None or request.to_ts_ms is not None
        paced = request.pacing == formats.PACING_ORIGINAL
        loop = asyncio.get_running_loop()
        it = readable_events(state, request.session_id, request.from_seq, request.to_seq, missing)
        batch = producer.create_batch()
        pending: list[asyncio.Future[Any]] = []
        prev_ts: int | None = None
        first = True
        while True:
            chunk = await loop.run_in_executor(self._pool, _take, it, CHUNK)
            if not chunk:
                break
            for seq, data in chunk:
                if by_time or paced:
                    _, ts_ms = formats.peek_seq_ts(data)
                    if request.from_ts_ms is not None and ts_ms < request.from_ts_ms:
                        continue
                    if request.to_ts_ms is not None and ts_ms > request.to_ts_ms:
                        continue
                    if paced:
                        delay = pacing.delay_s(prev_ts, ts_ms, request.speed)
                        if delay > 0:
                            # Send what is due before waiting for the next event's time.
                            if batch.record_count():
                                pending.append(
                                    await clients.queue_batch(producer, batch, topic, target)
                                )
                                batch = producer.create_batch()
                            await asyncio.sleep(delay)
                        prev_ts = ts_ms
                headers = formats.event_headers(
                    request.request_id, seq, total if first else None, replier
                )
                first = False
                if batch.append(key=key, value=data, timestamp=None, headers=headers) is None:
                    pending.append(await clients.queue_batch(producer, batch, topic, target))
                    batch = producer.create_batch()
                    batch.append(key=key, value=data, timestamp=None, headers=headers)
                checksum.add(seq)
            if len(pending) > 8:
                await asyncio.gather(*pending)
                pending.clear()
        if batch.record_count():
            pending.append(await clients.queue_batch(producer, batch, topic, target))
        if pending:
            await asyncio.gather(*pending)
        if missing:
            log.warning(
                "replay %s of %s: %d damaged frame(s) skipped, seqs %s; healing them from %s",
                request.request_id,
                request.session_id,
                len(missing),
                formats.format_ranges(seq for seq, _ in missing),
                state.topic,
            )
            self._heal_later(state, [loc for _, loc in missing])
            return formats.STATUS_PARTIAL
        return formats.STATUS_OK

    def _heal_later(self, state: Any, damaged: Sequence[Location]) -> None:
        """Start healing these damaged frames of `state`'s partition, unless a heal runs."""
        if state.partition in self._healing:
            return  # the next partial replay asks again if this one leaves anything
        self._healing.add(state.partition)
        task = asyncio.ensure_future(self._heal(state, [(x.segment, x.position) for x in damaged]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heal(self, state: Any, damaged: list[tuple[int, int]]) -> None:
        p = state.partition
        try:
            report = await heal.heal_state(state, damaged, bootstrap=self.bootstrap)
            self.healed += len(report.healed)
            log.warning(
                "partition %d: healed %d event(s) from %s offsets %s%s",
                p,
                len(report.healed),
                state.topic,
                ", ".join(f"{s.lo}..{s.hi}" for s in report.spans),
                "; not healed: " + "; ".join(report.problems) if report.problems else "",
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("partition %d: healing damaged frames failed", p)
        finally:
            self._healing.discard(p)

    async def _partition_of(self, topic: str, key: bytes) -> int:
        producer = await self.producer()
        partitions = sorted(await producer.partitions_for(topic))
        return int(self._partitioner(key, partitions, partitions))

    async def _send_end(
        self,
        topic: str,
        session_id: str,
        request_id: str,
        status: str,
        checksum: SeqChecksum,
        error: str = "",
        replier: str = "",
        missing: Sequence[int] = (),
    ) -> None:
        producer = await self.producer()
        key = session_id.encode()
        target = await self._partition_of(topic, key)
        await producer.send_and_wait(
            topic,
            value=b"",
            key=key,
            partition=target,
            headers=formats.end_headers(request_id, status, checksum, error, replier, missing),
        )

    async def _dead_letter(
        self,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        detail: str,
        partition: int | None,
        offset: int | None,
    ) -> None:
        """Same record shape as ingest's dead letters (`workers.ingest.dlq`)."""
        log.warning("replay request to the DLQ: %s: %s", reason, detail)
        letter = dead_letter(
            reason=reason,
            detail=detail,
            data=value or b"",
            topic=REPLAY_REQUESTS_TOPIC,
            partition=-1 if partition is None else partition,
            offset=-1 if offset is None else offset,
            key=key,
        )
        try:
            producer = await self.producer()
            await producer.send_and_wait(
                DLQ_TOPIC, value=letter.value, key=letter.key, headers=letter.headers
            )
        except Exception:
            log.exception("could not dead-letter a replay request (%s)", reason)

    # -- used by the web views -----------------------------------------------------

    async def submit(self, request: ReplayRequest) -> None:
        """Produce `request` to the request topic, so the session's owner answers it."""
        request.validate(self.target_prefix)
        producer = await self.producer()
        await producer.send_and_wait(
            REPLAY_REQUESTS_TOPIC,
            value=formats.encode_request(request),
            key=request.session_id.encode(),
        )


def _expected(info: Any, request: ReplayRequest) -> int | None:
    """How many events the replay will likely send (progress bars only), or None."""
    count = getattr(info, "count", None)
    if not isinstance(count, int):
        return None
    if request.from_seq is None and request.to_seq is None:
        return count
    last = getattr(info, "last_seq", None)
    if not isinstance(last, int):
        return None
    lo = max(request.from_seq or 0, last - count + 1)
    hi = min(request.to_seq if request.to_seq is not None else last, last)
    return max(0, hi - lo + 1)


def now_ms() -> int:
    return int(time.time() * 1000)
