"""The client side of replay and tail: ask for a replay, read its reply, follow kaizen.events.

No consumer groups anywhere here: a group costs a join delay (about half the
session timeout on tansu) and commits nobody needs. Consumers `assign()`
every partition of their topic and seek to its end.

Invariants:

* `open_follower` returns only once every partition's position is resolved,
  so anything produced after it returns is read. tansu answers "latest" with
  the start of the last batch + 1, which may put us slightly before the true
  end: harmless, replies are filtered by request id and live events by seq;
* the reply consumer is positioned BEFORE the request is sent, so no reply is
  missed; the end marker (never an end offset) says when a replay is complete,
  and its count and checksum are checked against what arrived;
* a silence of `timeout` seconds with no reply for the request raises
  `ReplyTimeout`; any reply resets the clock (long replays never time out);
* a client replying to a topic of its own also listens on kaizen.replay, where
  a worker refusing that target answers at once (never a time-out).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from workers.codec import batch as batches
from workers.codec.errors import DecodeError
from workers.codec.event import Event, decode_event
from workers.errors import ReplayError
from workers.kafka import clients
from workers.replay import formats
from workers.replay.formats import EndMarker, ReplayRequest, SeqChecksum
from workers.settings import REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC

DEFAULT_TIMEOUT = 30.0


class ReplyTimeout(ReplayError, TimeoutError):
    """No reply to a replay request within the timeout."""


@dataclass(frozen=True, slots=True)
class Replayed:
    seq: int
    value: bytes
    total: int | None  # the worker's expected count, on the first event only


@dataclass(frozen=True, slots=True)
class ReplayResult:
    end: EndMarker
    received: int
    checksum: str

    @property
    def complete(self) -> bool:
        """Every event the worker sent arrived once, in order."""
        return self.received == self.end.count and self.checksum == self.end.checksum


async def open_follower(
    bootstrap: clients.Target,
    topic: str | Sequence[str],
    *,
    from_beginning: bool = False,
    timeout: float = 15.0,
) -> AIOKafkaConsumer:
    """A group-less consumer of every partition of `topic` (or topics), at its end (or start)."""
    topics = [topic] if isinstance(topic, str) else list(topic)
    consumer = clients.new_consumer(
        bootstrap,
        role="replay-client",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    try:
        await consumer.start()
        deadline = time.monotonic() + timeout
        tps = []
        for name in topics:
            partitions = consumer.partitions_for_topic(name)
            while not partitions:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {name} does not exist on {bootstrap}")
                # TopicAuthorizationFailedError when an ACL hides the topic
                partitions = await clients.topic_partitions(consumer._client, name)
                if not partitions:
                    await asyncio.sleep(0.2)
            tps += [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the reset now, not at the first fetch
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def start_producer(bootstrap: clients.Target) -> AIOKafkaProducer:
    return await clients.start_producer(bootstrap, "replay-client")


async def send_request(producer: AIOKafkaProducer, request: ReplayRequest) -> None:
    await producer.send_and_wait(
        REPLAY_REQUESTS_TOPIC,
        value=formats.encode_request(request),
        key=request.session_id.encode(),
    )


async def replies(
    consumer: AIOKafkaConsumer, request_id: str, timeout: float = DEFAULT_TIMEOUT
) -> AsyncIterator[Replayed | EndMarker]:
    """Events of the reply to `request_id`, then its end marker; ReplyTimeout on silence.

    For one request at a time on a consumer of its own; `ReplayClient` routes many.
    """
    deadline = time.monotonic() + timeout
    first: str | None = None
    while True:
        batch = await consumer.getmany(timeout_ms=200, max_records=5000)
        for records in batch.values():
            for record in records:
                item = _reply_item(record)
                if item is None or item[0] != request_id:
                    continue
                if first is None:
                    first = item[1]
                elif item[1] != first:
                    continue  # a second worker answering the same request
                deadline = time.monotonic() + timeout
                yield item[2]
                if isinstance(item[2], EndMarker):
                    return
        if time.monotonic() > deadline:
            raise ReplyTimeout(f"no reply to replay request {request_id} in {timeout:.0f}s")


class ReplayClient:
    """Producer + one reply consumer, shared by any number of concurrent replays.

    One reader task owns the consumer and routes each reply record, by its
    request id, to the queue of the replay waiting for it (records of other
    requests are dropped), so concurrent `replay()` calls never steal each
    other's records.
    """

    def __init__(
        self,
        bootstrap: clients.Target,
        target_topic: str = REPLAY_TOPIC,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.bootstrap = bootstrap
        self.target_topic = target_topic
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Queue[Replayed | EndMarker]] = {}
        self._replier: dict[str, str] = {}

    async def __aenter__(self) -> ReplayClient:
        try:
            # Refusals of a target come on the default topic: listen there too.
            topics = dict.fromkeys((self.target_topic, REPLAY_TOPIC))
            self._consumer = await open_follower(self.bootstrap, list(topics))
            self._producer = await start_producer(self.bootstrap)
        except BaseException:
            await self.close()
            raise
        self._reader = asyncio.ensure_future(self._read(self._consumer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    item = _reply_item(record)
                    if item is None:
                        continue
                    request_id, replier, reply = item
                    queue = self._waiting.get(request_id)
                    if queue is None:
                        continue
                    first = self._replier.setdefault(request_id, replier)
                    if replier == first:  # a second worker answering it is ignored
                        queue.put_nowait(reply)

    def request(self, session_id: str, **options: Any) -> ReplayRequest:
        request = ReplayRequest(
            request_id=formats.new_request_id(),
            session_id=session_id,
            target_topic=self.target_topic,
            requested_ts_ms=int(time.time() * 1000),
            **options,
        )
        request.validate(None)  # the worker alone knows which targets it allows
        return request

    def expect(self, request_id: str) -> AsyncIterator[Replayed | EndMarker]:
        """Start collecting the replies to `request_id` now; iterate to read them."""
        queue: asyncio.Queue[Replayed | EndMarker] = asyncio.Queue()
        self._waiting[request_id] = queue
        return self._drain(request_id, queue)

    async def _drain(
        self, request_id: str, queue: asyncio.Queue[Replayed | EndMarker]
    ) -> AsyncIterator[Replayed | EndMarker]:
        try:
            while True:
                if self._reader is not None and self._reader.done():
                    self._reader.result()  # the reader died: raise its error here
                try:
                    item = await asyncio.wait_for(queue.get(), self.timeout)
                except TimeoutError:
                    raise ReplyTimeout(
                        f"no reply to replay request {request_id} in {self.timeout:.0f}s"
                    ) from None
                yield item
                if isinstance(item, EndMarker):
                    return
        finally:
            self._waiting.pop(request_id, None)
            self._replier.pop(request_id, None)

    async def replay(
        self, request: ReplayRequest
    ) -> AsyncIterator[Replayed | EndMarker | ReplayResult]:
        """Send `request`; yield its events, its end marker, then the checked result."""
        assert self._producer is not None, "use async with"
        replies_ = self.expect(request.request_id)
        await send_request(self._producer, request)
        checksum = SeqChecksum()
        async for item in replies_:
            if isinstance(item, Replayed):
                checksum.add(item.seq)
            yield item
            if isinstance(item, EndMarker):
                yield ReplayResult(item, checksum.count, checksum.hex)

    async def collect(self, session_id: str, **options: Any) -> tuple[list[Replayed], ReplayResult]:
        """The whole reply to one request (tests, benchmarks)."""
        events: list[Replayed] = []
        result: ReplayResult | None = None
        async for item in self.replay(self.request(session_id, **options)):
            if isinstance(item, Replayed):
                events.append(item)
            elif isinstance(item, ReplayResult):
                result = item
        assert result is not None
        return events, result


def _reply_item(record: Any) -> tuple[str, str, Replayed | EndMarker] | None:
    """(request id, replier, reply) of a record of the reply topic; None if it is not a reply."""
    headers = formats.header_map(record.headers)
    request_id = headers.get(formats.H_REQUEST)
    if request_id is None:
        return None
    replier = headers.get(formats.H_REPLIER, "")
    end = formats.parse_end(headers)
    if end is not None:
        return request_id, replier, end
    seq = headers.get(formats.H_SEQ)
    if seq is None:
        return None
    total = headers.get(formats.H_TOTAL)
    return (
        request_id,
        replier,
        Replayed(int(seq), record.value or b"", int(total) if total else None),
    )


def decode_message(value: bytes | None) -> Iterator[bytes]:
    """The single-object events in one kaizen.events message (a batch or one event)."""
    if not value:
        return
    if batches.is_batch(value):
        yield from batches.split(value)
    elif batches.is_single(value):
        yield value
    else:
        raise DecodeError("bad_marker", f"message starts with {value[:4].hex()}")


def live_events(records: Iterable[Any], session_id: str | None) -> Iterator[tuple[Event, bytes]]:
    """Decoded events of kaizen.events records, of one session (or all); bad ones skipped."""
    key = session_id.encode() if session_id is not None else None
    for record in records:
        if key is not None and record.key is not None and record.key != key:
            continue
        try:
            for item in decode_message(record.value):
                event = decode_event(item)
                if session_id is None or event["session_id"] == session_id:
                    yield event, item
        except DecodeError:
            continue  # the worker dead-letters it; a viewer just skips it
