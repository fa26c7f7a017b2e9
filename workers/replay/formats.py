"""Replay wire formats: the request, the reply headers, the end marker and its checksum.

Request: one `kaizen.ReplayRequest` (schemas/replay_request.avsc) in Avro
single-object encoding, keyed by session id on `kaizen.replay.requests`.

Reply, on the request's target topic (default `kaizen.replay`), keyed by session id:

* one message per event, value = the event's single-object bytes exactly as
  stored in the hot log, headers `kaizen-request` (request id) and
  `kaizen-seq` (decimal seq); the first one also carries `kaizen-total` (the
  number of events the worker expects to send, for progress bars only);
* then one header-only end marker (empty value) with `kaizen-request`,
  `kaizen-end` = `ok` | `not_found` | `error`, `kaizen-count` (events sent),
  `kaizen-checksum` (see `SeqChecksum`), `kaizen-last-seq` (when count > 0)
  and `kaizen-error` (a sentence, with status error).

Every reply message also carries `kaizen-replier`, unique per answer (worker
instance + answer number): if two workers ever answer one request (a
rebalance at the wrong moment), a client keeps to the first replier it hears.

Invariants: every header value is ASCII text; events are sent in strictly
increasing seq order; the end marker is the last message of a request; the
checksum is the CRC-32C of the seqs sent, each as 8 bytes big-endian signed,
in the order sent, so a client recomputing it over what it received knows it
got every event once and in order. Pure functions only: no I/O here.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import crc32c

from workers.codec.errors import DecodeError
from workers.codec.single_object import HEADER_SIZE, SingleObjectCodec
from workers.settings import DLQ_TOPIC, EVENTS_TOPIC, REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC

H_REQUEST = "kaizen-request"
H_SEQ = "kaizen-seq"
H_TOTAL = "kaizen-total"
H_END = "kaizen-end"
H_COUNT = "kaizen-count"
H_CHECKSUM = "kaizen-checksum"
H_LAST_SEQ = "kaizen-last-seq"
H_ERROR = "kaizen-error"
H_REPLIER = "kaizen-replier"

STATUS_OK = "ok"
STATUS_NOT_FOUND = "not_found"
STATUS_ERROR = "error"
STATUSES = (STATUS_OK, STATUS_NOT_FOUND, STATUS_ERROR)

PACING_FAST = "fast"
PACING_ORIGINAL = "original"

# Replies must never feed back into ingest or into the request stream.
FORBIDDEN_TARGETS = frozenset({EVENTS_TOPIC, REPLAY_REQUESTS_TOPIC, DLQ_TOPIC})

Headers = Sequence[tuple[str, bytes]]

_SEQ = struct.Struct(">q")


@cache
def request_codec() -> SingleObjectCodec:
    return SingleObjectCodec("replay_request")


class InvalidRequest(DecodeError):
    """The request decoded but asks for something the worker will not do."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    request_id: str
    session_id: str
    from_seq: int | None = None
    to_seq: int | None = None
    from_ts_ms: int | None = None
    to_ts_ms: int | None = None
    target_topic: str = REPLAY_TOPIC
    pacing: str = PACING_FAST
    speed: float = 1.0
    requested_ts_ms: int = 0

    def to_record(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "session_id": self.session_id,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "from_ts_ms": self.from_ts_ms,
            "to_ts_ms": self.to_ts_ms,
            "target_topic": self.target_topic,
            "pacing": self.pacing,
            "speed": float(self.speed),
            "requested_ts_ms": self.requested_ts_ms,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ReplayRequest:
        return cls(
            request_id=str(record["request_id"]),
            session_id=str(record["session_id"]),
            from_seq=record.get("from_seq"),
            to_seq=record.get("to_seq"),
            from_ts_ms=record.get("from_ts_ms"),
            to_ts_ms=record.get("to_ts_ms"),
            target_topic=str(record.get("target_topic") or REPLAY_TOPIC),
            pacing=str(record.get("pacing") or PACING_FAST),
            speed=float(record.get("speed", 1.0)),
            requested_ts_ms=int(record.get("requested_ts_ms", 0)),
        )

    def validate(self) -> None:
        """InvalidRequest when the request cannot be answered as asked."""
        if not self.request_id:
            raise InvalidRequest("bad_request", "empty request_id")
        if not self.session_id:
            raise InvalidRequest("bad_request", "empty session_id")
        if self.target_topic in FORBIDDEN_TARGETS:
            raise InvalidRequest("bad_target", f"replies may not go to {self.target_topic}")
        if self.from_seq is not None and self.to_seq is not None and self.from_seq > self.to_seq:
            raise InvalidRequest("bad_range", f"from_seq {self.from_seq} > to_seq {self.to_seq}")
        if (
            self.from_ts_ms is not None
            and self.to_ts_ms is not None
            and self.from_ts_ms > self.to_ts_ms
        ):
            raise InvalidRequest(
                "bad_range", f"from_ts_ms {self.from_ts_ms} > to_ts_ms {self.to_ts_ms}"
            )
        if self.pacing not in (PACING_FAST, PACING_ORIGINAL):
            raise InvalidRequest("bad_request", f"pacing {self.pacing!r}")
        if not self.speed > 0:  # also rejects NaN
            raise InvalidRequest("bad_request", f"speed must be > 0, not {self.speed}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def encode_request(request: ReplayRequest) -> bytes:
    return request_codec().encode(request.to_record())


def decode_request(data: bytes | None) -> ReplayRequest:
    """The request in `data`; DecodeError (InvalidRequest for a bad ask) otherwise."""
    if data is None:
        raise DecodeError("empty", "no value")
    request = ReplayRequest.from_record(request_codec().decode(data))
    request.validate()
    return request


class SeqChecksum:
    """CRC-32C over the seqs, each 8 bytes big-endian signed, in order; 8 hex digits."""

    __slots__ = ("count", "crc", "last_seq")

    def __init__(self) -> None:
        self.crc = 0
        self.count = 0
        self.last_seq: int | None = None

    def add(self, seq: int) -> None:
        self.crc = crc32c.crc32c(_SEQ.pack(seq), self.crc)
        self.count += 1
        self.last_seq = seq

    def add_all(self, seqs: Iterable[int]) -> SeqChecksum:
        for seq in seqs:
            self.add(seq)
        return self

    @property
    def hex(self) -> str:
        return f"{self.crc:08x}"


def event_headers(
    request_id: str, seq: int, total: int | None = None, replier: str = ""
) -> list[tuple[str, bytes]]:
    headers = [(H_REQUEST, request_id.encode()), (H_SEQ, str(seq).encode())]
    if replier:
        headers.append((H_REPLIER, replier.encode()))
    if total is not None:
        headers.append((H_TOTAL, str(total).encode()))
    return headers


def end_headers(
    request_id: str, status: str, checksum: SeqChecksum, error: str = "", replier: str = ""
) -> list[tuple[str, bytes]]:
    headers = [
        (H_REQUEST, request_id.encode()),
        (H_END, status.encode()),
        (H_COUNT, str(checksum.count).encode()),
        (H_CHECKSUM, checksum.hex.encode()),
    ]
    if replier:
        headers.append((H_REPLIER, replier.encode()))
    if checksum.last_seq is not None:
        headers.append((H_LAST_SEQ, str(checksum.last_seq).encode()))
    if error:
        headers.append((H_ERROR, error.encode("ascii", "replace")[:500]))
    return headers


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers as text; the last value wins for a repeated name."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        out[name] = (value or b"").decode("utf-8", "replace")
    return out


@dataclass(frozen=True, slots=True)
class EndMarker:
    request_id: str
    status: str
    count: int
    checksum: str
    last_seq: int | None
    error: str


def parse_end(headers: Mapping[str, str]) -> EndMarker | None:
    """The end marker in these headers, or None when they belong to an event message."""
    status = headers.get(H_END)
    if status is None:
        return None
    last = headers.get(H_LAST_SEQ)
    return EndMarker(
        request_id=headers.get(H_REQUEST, ""),
        status=status,
        count=int(headers.get(H_COUNT, "0") or 0),
        checksum=headers.get(H_CHECKSUM, ""),
        last_seq=int(last) if last else None,
        error=headers.get(H_ERROR, ""),
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag Avro long at pos: (value, next pos)."""
    shift = 0
    acc = 0
    while True:
        byte = data[pos]
        pos += 1
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise DecodeError("malformed", "varint too long")
    return (acc >> 1) ^ -(acc & 1), pos


def peek_seq_ts(data: bytes) -> tuple[int, int]:
    """(seq, ts_ms) of a single-object event without decoding the rest.

    The Event schema leads with session_id (string), seq (long), ts_ms (long)
    in every version, so the three leading fields are read straight off the body.
    """
    try:
        length, pos = _varint(data, HEADER_SIZE)
        pos += length
        seq, pos = _varint(data, pos)
        ts_ms, _ = _varint(data, pos)
    except IndexError:
        raise DecodeError("truncated", "event shorter than its key fields") from None
    return seq, ts_ms
