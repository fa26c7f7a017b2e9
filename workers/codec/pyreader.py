"""The Python lean reader: straight-line code generated from a `workers.codec.program.Program`.

`build(program)` returns a function
``read(event_bytes) -> (session_id, seq, ts_ms, agent, model, producer)`` that walks the body
field by field and validates all of it, exactly as the C reader runs the same program: every
varint well formed and no longer than its type allows, every length inside the body, every
string UTF-8, key strings within their limit, every enum and union index in range, booleans 0
or 1, the body consumed exactly.

Why generated code: fastavro reads about 80-100k events/s of the event per core here, and
an interpreter of the program in Python would be slower still.  Runs of fields whose values
are not kept and whose encodings a regular expression describes exactly (no length prefix)
are checked by one regex match, in C; when a match fails, the same fields are walked by the
straight-line code, which names the reason.

Errors: IndexError (the body ends inside a value), `Malformed`, `Trailing`,
UnicodeDecodeError, or a `DecodeError` with reason ``key_too_long``; `workers.codec.lean`
maps them to reasons.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from workers.codec import program as P
from workers.codec.errors import DecodeError
from workers.codec.single_object import HEADER_SIZE
from workers.errors import KaizenError

Reader = Callable[[bytes], tuple[str, int, int, str, "str | None", str]]


class Malformed(KaizenError):
    """A value the schema forbids (internal: ``lean`` turns it into a DecodeError)."""


class Trailing(KaizenError):
    """Bytes left after the record (internal: ``lean`` turns it into a DecodeError)."""


_ANY = rb"[\x00-\xff]"
_VARINT_RE = {
    P.INT: rb"(?:[\x80-\xff]{0,3}[\x00-\x7f]|[\x80-\xff]{4}[\x00-\x0f])",
    P.LONG: rb"(?:[\x80-\xff]{0,8}[\x00-\x7f]|[\x80-\xff]{9}[\x00\x01])",
}
_WIDTH = {P.INT: 5, P.LONG: 10}
_VAR_NAMES = dict(zip(P.SLOTS, ("sid", "seq", "ts", "agent", "model", "producer"), strict=True))


def _pattern(node: P.Node) -> bytes | None:
    """A bytes regex matching exactly the valid encodings of `node`; None when it has a
    length-prefixed part (string, bytes, key)."""
    op = node.op
    if op == P.UNION:
        alts = []
        for k, branch in enumerate(node.branches):
            inner = _pattern(branch)
            if inner is None:
                return None
            alts.append(re.escape(bytes([2 * k])) + inner)
        return b"(?:" + b"|".join(alts) + b")"
    if op == P.BOOL:
        return rb"[\x00\x01]"
    if op in _VARINT_RE:
        return _VARINT_RE[op]
    if op == P.ENUM:
        return b"[" + b"".join(re.escape(bytes([2 * k])) for k in range(len(node.symbols))) + b"]"
    if op in P.FIXED_SIZES or op == P.FIXED:
        size = P.FIXED_SIZES.get(op, node.size)
        return _ANY + b"{%d}" % size if size else b""
    return None


class _Gen:
    """Emits the reader of one program."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0
        self.namespace: dict[str, object] = {
            "_Malformed": Malformed,
            "_Trailing": Trailing,
            "_DecodeError": DecodeError,
            "_too_long": P.key_too_long_detail,
        }

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def tmp(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def run(self, i: int, nodes: list[P.Node]) -> None:
        """Validate several unkept fields with one regex match (in C); on a mismatch the
        straight-line code of the same fields names the reason."""
        name = f"_rx{self.n}"
        self.n += 1
        self.namespace[name] = re.compile(b"".join(_pattern(x) or b"" for x in nodes)).match
        self.emit(i, f"m = {name}(b, p)")
        self.emit(i, "if m is None:")
        for node in nodes:
            self.value(i + 1, node, None)
        self.emit(i + 1, "raise _Malformed(f'{len(b)} bytes fail a regex the fields pass')")
        self.emit(i, "p = m.end()")

    def varint(self, i: int, target: str | None, width: int) -> None:
        """`target` = the zigzag-decoded varint at p (the loop inline: no call per value)."""
        self.emit(i, "c = b[p]; p += 1")
        self.emit(i, "if c & 0x80:")
        self.emit(i + 1, "v = c & 0x7F; sh = 7")
        self.emit(i + 1, "while True:")
        self.emit(i + 2, "c = b[p]; p += 1")
        self.emit(i + 2, "v |= (c & 0x7F) << sh")
        self.emit(i + 2, "if not c & 0x80: break")
        self.emit(i + 2, "sh += 7")
        self.emit(i + 2, f"if sh >= {7 * width}:")
        self.emit(i + 3, f"raise _Malformed('varint longer than {width} bytes')")
        self.emit(i + 1, f"if v >> {32 if width == 5 else 64}:")
        self.emit(i + 2, f"raise _Malformed('varint of {width} bytes out of range')")
        self.emit(i + 1, "c = v")
        if target:
            self.emit(i, f"{target} = (c >> 1) ^ -(c & 1)")

    def sized(self, i: int, node: P.Node, target: str | None) -> None:
        length = self.tmp()
        self.varint(i, length, 10)
        self.emit(i, f"if {length} < 0:")
        self.emit(i + 1, f"raise _Malformed('negative length {{{length}}}')")
        self.emit(i, f"q = p + {length}")
        self.emit(i, "if q > n:")
        self.emit(i + 1, "raise IndexError('value runs past the body')")
        if node.op == P.KEY:
            self.emit(i, f"if {length} > {node.size}:")
            self.emit(
                i + 1, f"raise _DecodeError('key_too_long', _too_long({node.name!r}, {length}))"
            )
        if node.op == P.BYTES:
            if target:
                self.emit(i, f"{target} = b[p:q]")
        else:
            self.emit(i, f"{target or '_'} = b[p:q].decode()")
        self.emit(i, "p = q")

    def value(self, i: int, node: P.Node, target: str | None) -> None:
        """Validate one value at p; keep it in `target` when given."""
        op = node.op
        if op == P.UNION:
            idx = self.tmp()
            self.emit(i, f"{idx} = b[p]; p += 1")
            for k, branch in enumerate(node.branches):
                self.emit(i, f"{'if' if k == 0 else 'elif'} {idx} == {2 * k}:")
                before = len(self.lines)
                self.value(i + 1, branch, target)
                if len(self.lines) == before:
                    self.emit(i + 1, "pass")
            self.emit(i, "else:")
            count = len(node.branches)
            self.emit(i + 1, f"raise _Malformed(f'union index byte {{{idx}}} of {count}')")
        elif op == P.NULL:
            if target:
                self.emit(i, f"{target} = None")
        elif op == P.BOOL:
            self.emit(i, "c = b[p]; p += 1")
            self.emit(i, "if c > 1:")
            self.emit(i + 1, "raise _Malformed(f'boolean byte {c}')")
            if target:
                self.emit(i, f"{target} = c == 1")
        elif op in _WIDTH:
            self.varint(i, target, _WIDTH[op])
        elif op in (P.STRING, P.BYTES, P.KEY):
            self.sized(i, node, target)
        elif op == P.ENUM:
            count = len(node.symbols)
            self.emit(i, "c = b[p]; p += 1")
            self.emit(i, f"if c & 1 or c >= {2 * count}:")
            self.emit(i + 1, f"raise _Malformed(f'enum index byte {{c}} of {count}')")
            if target:
                self.emit(i, f"{target} = {node.symbols!r}[c >> 1]")
        else:  # FLOAT, DOUBLE, FIXED (never kept: the compiler refuses that)
            self.emit(i, f"p += {P.FIXED_SIZES.get(op, node.size)}")
            self.emit(i, "if p > n:")
            self.emit(i + 1, "raise IndexError('fixed-size value runs past the body')")


def build(program: P.Program) -> Reader:
    """The Python reader of `program`."""
    gen = _Gen()
    gen.emit(0, "def read(b):")
    gen.emit(1, "n = len(b)")
    gen.emit(1, f"p = {HEADER_SIZE}")
    for slot, default in zip(P.SLOTS, P.DEFAULTS, strict=True):
        gen.emit(1, f"{_VAR_NAMES[slot]} = {default!r}")
    run: list[P.Node] = []
    for f in program.fields:
        if f.slot is None and _pattern(f.node) is not None:
            run.append(f.node)
            continue
        if run:
            gen.run(1, run)
            run = []
        gen.value(1, f.node, None if f.slot is None else _VAR_NAMES[P.SLOTS[f.slot]])
    if run:
        gen.run(1, run)
    gen.emit(1, "if p != n:")
    gen.emit(2, "raise _Trailing(n - p)")
    gen.emit(1, "return sid, seq, ts, agent, model, producer")
    source = "\n".join(gen.lines)
    exec(compile(source, f"<lean reader {program.fingerprint.hex()}>", "exec"), gen.namespace)
    reader: Reader = gen.namespace["read"]  # type: ignore[assignment]
    return reader
