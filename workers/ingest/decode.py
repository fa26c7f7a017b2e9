"""The ingest's decoder: split a Kafka message into checked events and rejections.

A message is either one Avro single-object-encoded event (``C3 01``) or a batch (``KZB1``,
`workers.codec.batch`).  Every event is read by the lean event reader
(`workers.codec.lean.EventReader`: the checks, the key bound, the reasons); the hot log
stores the accepted events' bytes as they came.  With the C reader, `_cdecode.decode_items`
reads a whole message's events in one call; whatever C does not accept goes through
`EventReader.event`, which names the reason, so the reasons and the order of events are the
same on both paths (tested with hypothesis, C against Python, on good and mutated events).

Rejections beyond the event reader's: bad_batch (a batch whose framing is broken: the whole
message), empty (a message without value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from workers.codec import batch as batch_format
from workers.codec.errors import DecodeError
from workers.codec.lean import DEFAULT_MAX_EVENT_BYTES, MAX_KEY_BYTES, Decoded, EventReader
from workers.codec.single_object import HEADER_SIZE, MARKER

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "MAX_KEY_BYTES",
    "Decoded",
    "LeanDecoder",
    "MessageResult",
    "Rejected",
]


class Rejected(NamedTuple):
    """One rejected event (or a whole message when it cannot be split)."""

    reason: str
    detail: str
    data: bytes


@dataclass(slots=True)
class MessageResult:
    """The outcome of one Kafka message: accepted events in order, rejected pieces."""

    events: list[Decoded]
    rejected: list[Rejected]


class LeanDecoder(EventReader):
    """Splits and checks messages; one instance per worker (readers cached per fingerprint).

    ``native=False`` keeps to the Python readers (tests compare both).
    """

    def message(self, value: bytes | None) -> MessageResult:
        """Every event of one Kafka message; bad events are rejected one by one."""
        events: list[Decoded] = []
        rejected: list[Rejected] = []
        if value is None:
            rejected.append(Rejected("empty", "message has no value", b""))
            return MessageResult(events, rejected)
        if batch_format.is_batch(value):
            try:
                items = batch_format.split(value)
            except DecodeError as exc:
                rejected.append(Rejected(exc.reason, exc.detail, value))
                return MessageResult(events, rejected)
        else:
            items = [value]
        if self._c is not None:
            # every event in C; what it does not accept goes through `event`, which names
            # the reason (or reads it with a Python reader), at its place in the order
            def fallback(item: bytes) -> None:
                try:
                    events.append(self.event(item))
                except DecodeError as exc:
                    rejected.append(Rejected(exc.reason, exc.detail, item))

            self._c.decode_items(
                items, self._readers, self.max_event_bytes, Decoded, events, fallback
            )
            return MessageResult(events, rejected)
        # fast path inline (no call of `event` per item); anything unusual goes through
        # `event`, which names the reason
        readers = self._readers
        limit = self.max_event_bytes
        append = events.append
        for item in items:
            reader = readers.get(item[2:HEADER_SIZE])
            if reader is not None and item[:2] == MARKER and len(item) <= limit:
                try:
                    sid, seq, ts, agent, model, producer = reader(item)
                except Exception:
                    pass
                else:
                    if sid and seq >= 0:
                        append(Decoded(sid, seq, ts, agent, model, producer, item))
                        continue
            try:
                append(self.event(item))
            except DecodeError as exc:
                rejected.append(Rejected(exc.reason, exc.detail, item))
        return MessageResult(events, rejected)
