"""Replay wire formats: the request, the reply headers, the end marker and its checksum.

Request: one `kaizen.ReplayRequest` (schemas/replay_request.avsc) in Avro
single-object encoding, keyed by session id on `kaizen.replay.requests`.

Reply, on the request's target topic (default `kaizen.replay`), keyed by session id:

* one message per event, value = the event's single-object bytes exactly as
  stored in the hot log, headers `kaizen-request` (request id) and
  `kaizen-seq` (decimal seq); the first one also carries `kaizen-total` (the
  number of events the worker expects to send, for progress bars only);
* then one header-only end marker (empty value) with `kaizen-request`,
  `kaizen-end` = `ok` | `partial` | `not_found` | `error`, `kaizen-count`
  (events sent), `kaizen-checksum` (see `SeqChecksum`), `kaizen-last-seq`
  (when count > 0), `kaizen-error` (a sentence, with status error) and, with
  status partial, `kaizen-missing`: the seqs the worker holds but could not
  read (damaged frames), as ranges `3-5,9` (`format_ranges`). A partial
  replay sent every readable event of the range asked for, in order; the
  worker heals the missing ones from kaizen.events in the background.

Targets: replies go to `kaizen.replay` or to a topic whose name starts with
the worker's configured prefix (`KAIZEN_REPLAY_TOPIC_PREFIX`); a request
naming any other target, or none, is answered at once with an error end
marker on `kaizen.replay`, where every client also listens for it.

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
from workers.codec.program import MAX_KEY_BYTES, key_too_long_detail
from workers.codec.single_object import HEADER_SIZE, SingleObjectCodec
from workers.errors import ReplayError
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
H_MISSING = "kaizen-missing"

STATUS_OK = "ok"
STATUS_NOT_FOUND = "not_found"
STATUS_ERROR = "error"
STATUS_PARTIAL = "partial"
STATUSES = (STATUS_OK, STATUS_PARTIAL, STATUS_NOT_FOUND, STATUS_ERROR)
MAX_MISSING_HEADER = 4000  # characters of kaizen-missing; longer lists end in ",..."

PACING_FAST = "fast"
PACING_ORIGINAL = "original"

# Replies must never feed back into ingest or into the request stream.
FORBIDDEN_TARGETS = frozenset({EVENTS_TOPIC, REPLAY_REQUESTS_TOPIC, DLQ_TOPIC})

Headers = Sequence[tuple[str, bytes]]

_SEQ = struct.Struct(">q")


@cache
def request_codec() -> SingleObjectCodec:
    return SingleObjectCodec("replay_request")


class InvalidRequest(ReplayError, DecodeError):
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
            target_topic=str(record.get("target_topic", REPLAY_TOPIC)),
            pacing=str(record.get("pacing") or PACING_FAST),
            speed=float(record.get("speed", 1.0)),
            requested_ts_ms=int(record.get("requested_ts_ms", 0)),
        )

    def validate(self, target_prefix: str | None = "") -> None:
        """InvalidRequest when the request cannot be answered as asked.

        `target_prefix` is the worker's `KAIZEN_REPLAY_TOPIC_PREFIX` (see `check_target`);
        None (a client, which cannot know the worker's setting) skips the allow-list.
        """
        if not self.request_id:
            raise InvalidRequest("bad_request", "empty request_id")
        if not self.session_id:
            raise InvalidRequest("bad_request", "empty session_id")
        # the event reader refuses longer session ids, so no such session can exist; a
        # longer key would also reach the index and Kafka unbounded
        size = len(self.session_id.encode())
        if size > MAX_KEY_BYTES:
            raise InvalidRequest("key_too_long", key_too_long_detail("session_id", size))
        check_target(self.target_topic, target_prefix)
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


def check_target(topic: str, prefix: str | None = "") -> None:
    """InvalidRequest("bad_target") unless replies may go to `topic`.

    Allowed: kaizen.replay, and any topic whose name starts with `prefix` (when one is
    configured) and is longer than it; never the events, request or dead-letter topics.
    With prefix None only the last rule is checked.
    """
    if not topic:
        raise InvalidRequest("bad_target", "no target topic")
    if topic in FORBIDDEN_TARGETS:
        raise InvalidRequest("bad_target", f"replies may not go to {topic}")
    if prefix is None or topic == REPLAY_TOPIC:
        return
    if prefix and topic.startswith(prefix) and topic != prefix:
        return
    allowed = f"{REPLAY_TOPIC} or a topic starting with {prefix!r}" if prefix else REPLAY_TOPIC
    raise InvalidRequest("bad_target", f"replies may not go to {topic}: only to {allowed}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def encode_request(request: ReplayRequest) -> bytes:
    return request_codec().encode(request.to_record())


def decode_request(data: bytes | None, target_prefix: str = "") -> ReplayRequest:
    """The request in `data`; DecodeError (InvalidRequest for a bad ask) otherwise."""
    if data is None:
        raise DecodeError("empty", "no value")
    request = ReplayRequest.from_record(request_codec().decode(data))
    request.validate(target_prefix)
    return request


def format_ranges(seqs: Iterable[int]) -> str:
    """Seqs as sorted ranges, `0-2,5,7-9`; repeats are dropped."""
    parts: list[str] = []
    ordered = sorted(set(seqs))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        lo, hi = ordered[i], ordered[j]
        parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
        i = j + 1
    return ",".join(parts)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """The inclusive (first, last) ranges of `format_ranges` text; a trailing `...` is ignored."""
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part or part == "...":
            continue
        # a range of negative seqs reads "-5--3": split at the dash after the first digit
        cut = part.find("-", 1)
        if cut < 0:
            out.append((int(part), int(part)))
        else:
            out.append((int(part[:cut]), int(part[cut + 1 :])))
    return out


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
    request_id: str,
    status: str,
    checksum: SeqChecksum,
    error: str = "",
    replier: str = "",
    missing: Iterable[int] = (),
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
    ranges = format_ranges(missing)
    if ranges:
        if len(ranges) > MAX_MISSING_HEADER:
            ranges = ranges[: ranges.rfind(",", 0, MAX_MISSING_HEADER)] + ",..."
        headers.append((H_MISSING, ranges.encode()))
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
    missing: tuple[tuple[int, int], ...] = ()  # inclusive seq ranges, with status partial

    @property
    def missing_text(self) -> str:
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.missing)


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
        missing=tuple(parse_ranges(headers.get(H_MISSING, ""))),
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
