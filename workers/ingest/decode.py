"""The lean decoder of the ingest path: split a Kafka message into checked events.

A message is either one Avro single-object-encoded event (``C3 01``) or a batch
(``KZB1``, `workers.codec.batch`). For every event the decoder returns the few
fields the index needs (session_id, seq, ts_ms, agent, model) and the event's
bytes unchanged; the hot log stores those bytes as they came.

Why not fastavro: on this machine fastavro reads about 80-100k events/s of the
26-field event per core, and projecting the reader schema or reading a whole
batch as one Avro array barely helps (skipping a field costs it about as much as
reading it). The ingest goal is 100k events/s end to end. So each writer schema
is compiled once, per fingerprint, into straight-line Python that walks the body
field by field and *validates* all of it: every varint is well formed and no
longer than its type allows, every length fits the body, every string is UTF-8,
every enum and union index is in range, booleans are 0 or 1, and the body is
consumed exactly. Only the leading key fields and agent/model are kept.

Faster still, when the optional C speed-up `_cdecode` is built (see `workers.speedups`):
`program` compiles each writer schema into a flat opcode program that the C
`Reader` walks with the same checks, and `_cdecode.decode_items` reads a whole
message's events in one call (about 0.4 us an event against about 4 us for the
generated Python). Whatever C does not accept goes through `LeanDecoder.event`,
which names the reason, so the reasons and the order of events are the same on
both paths (tested with hypothesis, C against Python, on good and mutated events).

Invariant (tested with hypothesis against `SingleObjectCodec.decode`): an event
the lean decoder accepts decodes with the full codec to the same session_id,
seq, ts_ms, agent and model. The lean decoder may be stricter than fastavro
(e.g. a boolean byte of 2, or a varint whose value overflows 64 bits, which
fastavro wraps silently), never laxer. Schemas with types the compiler does
not handle (records, arrays or maps inside the event) fall back to fastavro.

Every rejection is a `DecodeError` with a stable reason: too_short, bad_marker,
unknown_schema, bad_batch, truncated, malformed, invalid_utf8, trailing_bytes,
empty_session_id, bad_seq, too_large.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

from workers import speedups
from workers.codec import batch as batch_format
from workers.codec import schema as schemas
from workers.codec.errors import DecodeError
from workers.codec.single_object import HEADER_SIZE, MARKER, SingleObjectCodec, by_fingerprint

#: Larger events are dead-lettered with reason ``too_large``. The events topic
#: accepts messages up to the broker's limit; one event of a session has no
#: business being larger than this (payloads are hook JSON, already redacted).
DEFAULT_MAX_EVENT_BYTES = 1 << 20


class Decoded(NamedTuple):
    """One accepted event: its key, what the session index keeps, and its bytes."""

    session_id: str
    seq: int
    ts_ms: int
    agent: str
    model: str | None
    data: bytes


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


Reader = Callable[[bytes], tuple[str, int, int, str, "str | None"]]


class _Malformed(Exception):
    pass


#: a varint of an int (at most 5 bytes) or a long (at most 10): the most its last byte may
#: hold, so that the value fits 32 or 64 bits (fastavro would wrap the excess silently)
_LAST_BYTE_MAX = {5: 0x0F, 10: 0x01}


def _skip_varint(b: bytes, p: int, max_bytes: int) -> int:
    """Position after a varint whose first byte (at p-1) had its high bit set."""
    count = 1
    while True:
        c = b[p]
        p += 1
        count += 1
        if count == max_bytes and c > _LAST_BYTE_MAX[max_bytes]:
            raise _Malformed(f"varint of {max_bytes} bytes out of range")
        if not c & 0x80:
            return p


_ANY = rb"[\x00-\xff]"


def _pattern(schema: Any) -> bytes | None:
    """A bytes regex matching exactly the valid encodings of `schema`; None when it has a
    length-prefixed part (string, bytes) or a nested type a regex cannot check."""
    if isinstance(schema, list):
        if len(schema) > 63:
            return None
        alts = []
        for k, branch in enumerate(schema):
            inner = _pattern(branch)
            if inner is None:
                return None
            alts.append(re.escape(bytes([2 * k])) + inner)
        return b"(?:" + b"|".join(alts) + b")"
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, (dict, list)):
        return _pattern(kind)
    if kind == "null":
        return b""
    if kind == "boolean":
        return rb"[\x00\x01]"
    if kind == "int":
        return rb"(?:[\x80-\xff]{0,3}[\x00-\x7f]|[\x80-\xff]{4}[\x00-\x0f])"
    if kind == "long":
        return rb"(?:[\x80-\xff]{0,8}[\x00-\x7f]|[\x80-\xff]{9}[\x00\x01])"
    if kind == "float":
        return _ANY + b"{4}"
    if kind == "double":
        return _ANY + b"{8}"
    if kind == "fixed":
        return _ANY + b"{%d}" % int(schema["size"])
    if kind == "enum":
        count = len(schema["symbols"])
        if count > 63:
            return None
        return b"[" + b"".join(re.escape(bytes([2 * k])) for k in range(count)) + b"]"
    return None


_FIXED_SIZES = {"null": 0, "float": 4, "double": 8}


def _explain(b: bytes, p: int, types: list[Any]) -> NoReturn:
    """Why a run of fields failed its regex at `p`: IndexError (the body ends inside a value)
    or _Malformed, walked slowly field by field (only on this failure path)."""
    n = len(b)

    def byte(p: int) -> int:
        if p >= n:
            raise IndexError("value runs past the body")
        return b[p]

    def one(t: Any, p: int) -> int:
        if isinstance(t, list):
            c = byte(p)
            if c & 1 or c >= 2 * len(t):
                raise _Malformed(f"union index byte {c} of {len(t)}")
            return one(t[c >> 1], p + 1)
        kind = t["type"] if isinstance(t, dict) else t
        if isinstance(kind, (dict, list)):
            return one(kind, p)
        if kind == "boolean":
            if byte(p) > 1:
                raise _Malformed(f"boolean byte {b[p]}")
            return p + 1
        if kind in ("int", "long"):
            width = 5 if kind == "int" else 10
            for count in range(1, width + 1):
                c = byte(p)
                p += 1
                if count == width and c > _LAST_BYTE_MAX[width]:
                    raise _Malformed(f"varint of {width} bytes out of range")
                if not c & 0x80:
                    break
            return p
        if kind == "enum":
            c = byte(p)
            if c & 1 or c >= 2 * len(t["symbols"]):
                raise _Malformed(f"enum index byte {c} of {len(t['symbols'])}")
            return p + 1
        size = _FIXED_SIZES[kind] if kind in _FIXED_SIZES else int(t["size"])
        if p + size > n:
            raise IndexError("fixed-size value runs past the body")
        return p + size

    for t in types:
        p = one(t, p)
    raise _Malformed(f"{len(types)} fields from byte {p}")


class _Gen:
    """Emits the straight-line reader for one writer schema."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0
        self.patterns: dict[str, re.Pattern[bytes]] = {}
        self.types: dict[str, list[Any]] = {}

    def run(self, i: int, schemas_: list[Any]) -> None:
        """Validate several fields whose values are not kept with one regex match (in C)."""
        pattern = re.compile(b"".join(_pattern(t) or b"" for t in schemas_))
        name = f"_rx{len(self.patterns)}"
        self.patterns[name] = pattern
        types = f"_types{len(self.patterns)}"
        self.types[types] = schemas_
        self.emit(i, f"m = {name}(b, p)")
        self.emit(i, "if m is None:")
        self.emit(i + 1, f"_explain(b, p, {types})")
        self.emit(i, "p = m.end()")

    def tmp(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def varint(self, i: int, target: str, max_bytes: int) -> None:
        """`target` = the zigzag-decoded varint at p (the loop inline: no call per value)."""
        self.emit(i, "c = b[p]; p += 1")
        self.emit(i, "if c & 0x80:")
        self.emit(i + 1, "v = c & 0x7F; sh = 7")
        self.emit(i + 1, "while True:")
        self.emit(i + 2, "c = b[p]; p += 1")
        self.emit(i + 2, "v |= (c & 0x7F) << sh")
        self.emit(i + 2, "if not c & 0x80: break")
        self.emit(i + 2, "sh += 7")
        self.emit(i + 2, f"if sh >= {7 * max_bytes}:")
        self.emit(i + 3, f"raise _Malformed('varint longer than {max_bytes} bytes')")
        self.emit(i + 1, f"if v >> {32 if max_bytes == 5 else 64}:")
        self.emit(i + 2, f"raise _Malformed('varint of {max_bytes} bytes out of range')")
        self.emit(i + 1, "c = v")
        self.emit(i, f"{target} = (c >> 1) ^ -(c & 1)")

    def skip_varint(self, i: int, max_bytes: int) -> None:
        self.emit(i, "c = b[p]; p += 1")
        self.emit(i, "if c & 0x80:")
        self.emit(i + 1, f"p = _skip(b, p, {max_bytes})")

    def sized(self, i: int, what: str, target: str | None, utf8: bool) -> None:
        length = self.tmp()
        self.varint(i, length, 10)
        self.emit(i, f"if {length} < 0:")
        self.emit(i + 1, f"raise _Malformed('negative {what} length')")
        self.emit(i, f"q = p + {length}")
        self.emit(i, "if q > n:")
        self.emit(i + 1, f"raise IndexError('{what} runs past the body')")
        if utf8:
            self.emit(i, f"{target or '_'} = b[p:q].decode()")
        elif target:
            self.emit(i, f"{target} = b[p:q]")
        self.emit(i, "p = q")

    def fixed(self, i: int, size: int) -> None:
        self.emit(i, f"p += {size}")
        self.emit(i, "if p > n:")
        self.emit(i + 1, "raise IndexError('fixed-size value runs past the body')")

    def value(self, i: int, schema: Any, target: str | None) -> None:
        """Validate one value of `schema` at p; keep it in `target` when given."""
        if isinstance(schema, list):
            self.union(i, schema, target)
            return
        kind = schema["type"] if isinstance(schema, dict) else schema
        if isinstance(kind, (dict, list)):
            self.value(i, kind, target)
            return
        if kind == "null":
            if target:
                self.emit(i, f"{target} = None")
        elif kind == "boolean":
            self.emit(i, "c = b[p]; p += 1")
            self.emit(i, "if c > 1:")
            self.emit(i + 1, "raise _Malformed(f'boolean byte {c}')")
            if target:
                self.emit(i, f"{target} = c == 1")
        elif kind in ("int", "long"):
            width = 5 if kind == "int" else 10
            if target:
                self.varint(i, target, width)
            else:
                self.skip_varint(i, width)
        elif kind == "float":
            self.fixed(i, 4)
        elif kind == "double":
            self.fixed(i, 8)
        elif kind == "string":
            self.sized(i, "string", target, utf8=True)
        elif kind == "bytes":
            self.sized(i, "bytes", target, utf8=False)
        elif kind == "fixed":
            self.fixed(i, int(schema["size"]))
        elif kind == "enum":
            # a valid index is one byte (zigzag 2k, k < 64); an overlong varint is rejected
            symbols = schema["symbols"]
            if len(symbols) > 63:
                raise NotImplementedError("enum with more than 63 symbols")
            self.emit(i, "c = b[p]; p += 1")
            self.emit(i, f"if c & 1 or c >= {2 * len(symbols)}:")
            self.emit(i + 1, f"raise _Malformed(f'enum index byte {{c}} of {len(symbols)}')")
            if target:
                self.emit(i, f"{target} = {tuple(symbols)!r}[c >> 1]")
        else:
            raise NotImplementedError(f"lean reader does not handle {kind!r}")

    def union(self, i: int, branches: list[Any], target: str | None) -> None:
        # a valid index is one byte (zigzag 2k, k < 64); an overlong varint is rejected
        if len(branches) > 63:
            raise NotImplementedError("union with more than 63 branches")
        idx = self.tmp()
        self.emit(i, f"{idx} = b[p]; p += 1")
        for k, branch in enumerate(branches):
            self.emit(i, f"{'if' if k == 0 else 'elif'} {idx} == {2 * k}:")
            before = len(self.lines)
            self.value(i + 1, branch, target)
            if len(self.lines) == before:
                self.emit(i + 1, "pass")
        self.emit(i, "else:")
        self.emit(i + 1, f"raise _Malformed(f'union index byte {{{idx}}} of {len(branches)}')")


_KEEP = {
    "session_id": "sid",
    "seq": "seq",
    "ts_ms": "ts",
    "agent": "agent",
    "model": "model",
}


def compile_reader(writer: schemas.Schema) -> Reader:
    """A function body -> (session_id, seq, ts_ms, agent, model) that validates every field.

    Raises NotImplementedError for writer schemas it does not handle.
    """
    fields = writer.raw["fields"]
    gen = _Gen()
    gen.emit(0, "def read(b):")
    gen.emit(1, "n = len(b)")
    gen.emit(1, f"p = {HEADER_SIZE}")
    gen.emit(1, "agent = 'other'")
    gen.emit(1, "model = None")
    gen.emit(1, "ts = 0")
    names = {f["name"] for f in fields}
    if not {"session_id", "seq"} <= names:
        raise NotImplementedError("writer schema lacks session_id or seq")
    run: list[Any] = []
    for f in fields:
        target = _KEEP.get(f["name"])
        if target is None and _pattern(f["type"]) is not None:
            run.append(f["type"])
            continue
        if run:
            gen.run(1, run)
            run = []
        gen.value(1, f["type"], target)
    if run:
        gen.run(1, run)
    gen.emit(1, "if p != n:")
    gen.emit(2, "raise _Trailing(n - p)")
    gen.emit(1, "return sid, seq, ts, agent, model")
    namespace: dict[str, Any] = {
        "_skip": _skip_varint,
        "_Malformed": _Malformed,
        "_Trailing": _Trailing,
        "_explain": _explain,
        **gen.types,
        **{name: rx.match for name, rx in gen.patterns.items()},
    }
    exec(
        compile("\n".join(gen.lines), f"<lean reader {writer.fingerprint.hex()}>", "exec"),
        namespace,
    )
    reader: Reader = namespace["read"]
    return reader


class _Trailing(Exception):
    pass


# ---------------------------------------------------------------- the C reader's program

#: opcodes of `_cdecode.c` (its header comment describes the program format)
_OPS = {"null": 0, "boolean": 1, "int": 2, "long": 3, "float": 4, "double": 5, "string": 7}
_OPS["bytes"] = 8
OP_FIXED, OP_ENUM, OP_UNION, OP_KEEP = 6, 9, 10, 11
_SLOTS = {name: slot for slot, name in enumerate(("session_id", "seq", "ts_ms", "agent", "model"))}
#: slot values of fields a writer schema lacks, as the generated Python readers set them
DEFAULTS = (None, None, 0, "other", None)


def _node(schema: Any, keep: bool, symbols: list[tuple[str, ...]]) -> list[int]:
    if isinstance(schema, list):
        if len(schema) > 63:
            raise NotImplementedError("union with more than 63 branches")
        out = [OP_UNION, len(schema)]
        for branch in schema:
            body = _node(branch, keep, symbols)
            out += [len(body), *body]
        return out
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, (dict, list)):
        return _node(kind, keep, symbols)
    if kind in ("float", "double", "fixed") and keep:
        raise NotImplementedError(f"a kept {kind}")
    if kind in _OPS:
        return [_OPS[kind]]
    if kind == "fixed":
        return [OP_FIXED, int(schema["size"])]
    if kind == "enum":
        names = tuple(schema["symbols"])
        if len(names) > 63:
            raise NotImplementedError("enum with more than 63 symbols")
        table = -1
        if keep:
            table = len(symbols)
            symbols.append(names)
        return [OP_ENUM, len(names), table]
    raise NotImplementedError(f"lean reader does not handle {kind!r}")


def program(writer: schemas.Schema) -> tuple[bytes, tuple[tuple[str, ...], ...]]:
    """The C reader's program for `writer`: int32 opcodes, and the symbols of kept enums.

    Raises NotImplementedError for what the program format does not cover (the generated
    Python reader or fastavro then reads that schema).
    """
    fields = writer.raw["fields"]
    if not {"session_id", "seq"} <= {f["name"] for f in fields}:
        raise NotImplementedError("writer schema lacks session_id or seq")
    ops: list[int] = []
    symbols: list[tuple[str, ...]] = []
    for f in fields:
        slot = _SLOTS.get(f["name"])
        if slot is not None:
            ops += [OP_KEEP, slot]
        ops += _node(f["type"], slot is not None, symbols)
    return array("i", ops).tobytes(), tuple(symbols)


def _fastavro_reader(codec: SingleObjectCodec) -> Reader:
    def read(data: bytes) -> tuple[str, int, int, str, str | None]:
        rec = codec.decode(data)
        return rec["session_id"], rec["seq"], rec["ts_ms"], rec["agent"], rec["model"]

    return read


_c = speedups.load("workers.ingest._cdecode")


class LeanDecoder:
    """Splits and checks messages; one instance per worker (readers cached per fingerprint).

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
        if self._c is not None:
            try:
                ops, symbols = program(writer)
            except NotImplementedError:
                pass
            else:
                reader: Reader = self._c.Reader(ops, symbols, DEFAULTS, DecodeError)
                return reader
        try:
            return compile_reader(writer)
        except NotImplementedError:
            return _fastavro_reader(self.codec)

    def event(self, data: bytes) -> Decoded:
        """One single-object event, checked; DecodeError with the reason otherwise."""
        size = len(data)
        if size > self.max_event_bytes:
            raise DecodeError("too_large", f"{size} bytes, the limit is {self.max_event_bytes}")
        reader = by_fingerprint(self._readers, data)
        try:
            sid, seq, ts, agent, model = reader(data)
        except IndexError as exc:
            raise DecodeError("truncated", str(exc) or "body ends inside a value") from None
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", str(exc)) from None
        except _Malformed as exc:
            raise DecodeError("malformed", str(exc)) from None
        except _Trailing as exc:
            raise DecodeError("trailing_bytes", f"{exc.args[0]} bytes after the record") from None
        except DecodeError:
            raise
        except Exception as exc:  # the fastavro fallback raises many types
            raise DecodeError("malformed", f"{type(exc).__name__}: {exc}") from None
        if not sid:
            raise DecodeError("empty_session_id", "session_id is empty")
        if seq < 0:
            raise DecodeError("bad_seq", f"seq {seq} is negative")
        return Decoded(sid, seq, ts, agent, model, data)

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
                    sid, seq, ts, agent, model = reader(item)
                except Exception:
                    pass
                else:
                    if sid and seq >= 0:
                        append(Decoded(sid, seq, ts, agent, model, item))
                        continue
            try:
                append(self.event(item))
            except DecodeError as exc:
                rejected.append(Rejected(exc.reason, exc.detail, item))
        return MessageResult(events, rejected)
