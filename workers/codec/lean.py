"""The lean event reader: one single-object-encoded event -> its checked index keys.

Each writer schema of the event is compiled once, per fingerprint, by the one schema compiler
(`workers.codec.program`) into a program that *validates* the whole body: every varint well
formed and no longer than its type allows, every length inside the body, every string UTF-8,
every key field (session id, tool call id, producer) within `MAX_KEY_BYTES`, every enum and
union index in range, booleans 0 or 1, the body consumed exactly.  Only session_id, seq, ts_ms,
agent, model and producer are kept (producer "" for writers older than schema v2), with the
event's bytes unchanged.  The program runs in C (`_cdecode.c`, when built and not disabled, see
`workers.speedups`) or as generated Python (`workers.codec.pyreader`).  Why not fastavro: it
reads about 80-100k events/s of the event per core here, under the ingest goal of 100k
events/s end to end (figures in bench/).

Users: the ingest (`workers.ingest.decode`, which adds the splitting of Kafka messages and
the C call that reads a whole message) and the index rebuild (`workers.state.rebuild`), so
the rebuild indexes exactly what the ingest accepts.

Invariant (tested with hypothesis against `SingleObjectCodec.decode`): an event the lean
reader accepts decodes with the full codec to the same session_id, seq, ts_ms, agent, model
and producer.  It may be stricter than fastavro (e.g. a boolean byte of 2, a varint whose value
overflows 64 bits, which fastavro wraps silently, or a key field over `MAX_KEY_BYTES`), never
laxer.  Schemas the compiler does not handle fall back to fastavro, with the same key bound.
The C and the Python reader accept the same bytes with the same reasons (hypothesis, C
against Python, on good and mutated events).

Every rejection is a `DecodeError` with a stable reason: too_short, bad_marker,
unknown_schema, truncated, malformed, invalid_utf8, trailing_bytes, empty_session_id,
bad_seq, too_large, key_too_long.
"""

from __future__ import annotations

from typing import NamedTuple

from workers import speedups
from workers.codec import program as programs
from workers.codec import schema as schemas
from workers.codec.errors import DecodeError
from workers.codec.program import KEY_FIELDS, MAX_KEY_BYTES, key_too_long_detail
from workers.codec.pyreader import Malformed, Reader, Trailing, build
from workers.codec.single_object import SingleObjectCodec, by_fingerprint

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "MAX_KEY_BYTES", "Decoded", "EventReader"]

#: Larger events are rejected with reason ``too_large``. The events topic accepts messages
#: up to the broker's limit; one event of a session has no business being larger than this
#: (payloads are hook JSON, already redacted).
DEFAULT_MAX_EVENT_BYTES = 1 << 20


class Decoded(NamedTuple):
    """One accepted event: its key (session_id, producer, seq), what the session index keeps,
    and its bytes.  The field order is the readers' slot order (`program.SLOTS`), then data."""

    session_id: str
    seq: int
    ts_ms: int
    agent: str
    model: str | None
    producer: str
    data: bytes


def _fastavro_reader(codec: SingleObjectCodec) -> Reader:
    def read(data: bytes) -> tuple[str, int, int, str, str | None, str]:
        rec = codec.decode(data)
        for name in KEY_FIELDS:
            size = len((rec.get(name) or "").encode())
            if size > MAX_KEY_BYTES:
                raise DecodeError("key_too_long", key_too_long_detail(name, size))
        producer = rec.get("producer", "")
        return rec["session_id"], rec["seq"], rec["ts_ms"], rec["agent"], rec["model"], producer

    return read


_c = speedups.load("workers.codec._cdecode")


class EventReader:
    """Checks events; readers are compiled once per writer fingerprint.

    Each writer schema gets the fastest reader that handles it: the C reader (`_cdecode`,
    when built), else the generated Python reader, else fastavro.  ``native=False`` keeps
    to Python (tests compare both).
    """

    def __init__(
        self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, *, native: bool = True
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self.codec = SingleObjectCodec("event")
        self._c = _c if native else None
        self._readers: dict[bytes, Reader] = {}
        for writer in schemas.history("event"):
            self._readers[writer.fingerprint] = self._reader(writer)

    @property
    def native(self) -> bool:
        """True when the C reader serves (at least the current schema)."""
        return self._c is not None and isinstance(
            self._readers[schemas.current("event").fingerprint], self._c.Reader
        )

    def _reader(self, writer: schemas.Schema) -> Reader:
        try:
            prog = programs.compile_schema(writer)
        except NotImplementedError:
            return _fastavro_reader(self.codec)
        if self._c is not None:
            ops, tables = prog.c_program()
            reader: Reader = self._c.Reader(ops, tables, programs.DEFAULTS, DecodeError)
            return reader
        return build(prog)

    def event(self, data: bytes) -> Decoded:
        """One single-object event, checked; DecodeError with the reason otherwise."""
        size = len(data)
        if size > self.max_event_bytes:
            raise DecodeError("too_large", f"{size} bytes, the limit is {self.max_event_bytes}")
        reader = by_fingerprint(self._readers, data)
        try:
            sid, seq, ts, agent, model, producer = reader(data)
        except IndexError as exc:
            raise DecodeError("truncated", str(exc) or "body ends inside a value") from None
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", str(exc)) from None
        except Malformed as exc:
            raise DecodeError("malformed", str(exc)) from None
        except Trailing as exc:
            raise DecodeError("trailing_bytes", f"{exc.args[0]} bytes after the record") from None
        except DecodeError:
            raise
        except Exception as exc:  # the fastavro fallback raises many types
            raise DecodeError("malformed", f"{type(exc).__name__}: {exc}") from None
        if not sid:
            raise DecodeError("empty_session_id", "session_id is empty")
        if seq < 0:
            raise DecodeError("bad_seq", f"seq {seq} is negative")
        return Decoded(sid, seq, ts, agent, model, producer, data)
