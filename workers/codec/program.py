"""The schema compiler of the lean reader: one walk over an Avro writer schema.

`compile_schema` turns a writer schema of the event into a `Program`: one `Node` per field,
in field order, in the small set of value kinds the lean readers handle (null, boolean, int,
long, float, double, fixed, string, bytes, enum, union, and ``key``: a string that becomes an
index or topic key, bounded to `MAX_KEY_BYTES`), with the fields the index keeps marked by
their slot.  It is the only code that reads Avro schema JSON for the lean readers; both
readers are built from its output:

* the C reader (`_cdecode.c`) runs `Program.c_program()`, the nodes flattened into int32
  opcodes (the format is described at the top of `_cdecode.c`);
* the Python reader (`workers.codec.pyreader`) is straight-line code generated from the nodes.

Invariants: a schema the compiler accepts is read the same way by both readers (tested with
hypothesis, C against Python, on good and mutated events); what it does not handle (records,
arrays or maps inside the event, unions or enums of more than 63 members, a kept float or
fixed value) raises NotImplementedError, and fastavro reads that schema instead.

Key fields (`KEY_FIELDS`: the session id and the tool call id) are bounded at decode: an
event whose key field holds more than `MAX_KEY_BYTES` UTF-8 bytes is rejected with reason
``key_too_long`` (and dead-lettered), so no event reaches the hot log that the index cannot
hold (issue 12.1; README "Limits").
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from workers.codec import schema as schemas

#: opcodes (the values `_cdecode.c` knows them by)
NULL, BOOL, INT, LONG, FLOAT, DOUBLE, FIXED, STRING, BYTES, ENUM, UNION, KEEP, KEY = range(13)
_PRIMITIVES = {
    "null": NULL,
    "boolean": BOOL,
    "int": INT,
    "long": LONG,
    "float": FLOAT,
    "double": DOUBLE,
    "string": STRING,
    "bytes": BYTES,
}
#: bytes a fixed-size kind takes
FIXED_SIZES = {NULL: 0, FLOAT: 4, DOUBLE: 8}

#: the fields the index keeps, by slot (the order of `Decoded`'s first six fields)
SLOTS = ("session_id", "seq", "ts_ms", "agent", "model", "producer")
#: slot values of fields a writer schema lacks (writers before schema v2 had no producer:
#: their events are keyed with producer "", as they always were)
DEFAULTS = (None, None, 0, "other", None, "")
#: fields whose value becomes a key (index, Kafka): bounded to MAX_KEY_BYTES
KEY_FIELDS = ("session_id", "tool_call_id", "producer")
#: the longest key field accepted, in UTF-8 bytes.  Real ids are UUID-like (under 100 bytes);
#: the index itself could hold up to 65,535 bytes of session id (`workers.state.keys`).
MAX_KEY_BYTES = 1024
#: a valid union or enum index is one varint byte (zigzag 2k, k < 64)
MAX_BRANCHES = 63


@dataclass(frozen=True, slots=True)
class Node:
    """One value kind: `size` is a FIXED's size or a KEY's limit; `symbols` an ENUM's
    symbols; `branches` a UNION's members; `name` the field a KEY belongs to."""

    op: int
    size: int = 0
    symbols: tuple[str, ...] = ()
    branches: tuple[Node, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    slot: int | None  # index into SLOTS when the value is kept
    node: Node


@dataclass(frozen=True, slots=True)
class Program:
    fingerprint: bytes
    fields: tuple[Field, ...]

    def c_program(self) -> tuple[bytes, tuple[tuple[str, ...], ...]]:
        """The C reader's program: int32 opcodes, and the string tables they index (the
        symbols of kept enums, the names of key fields)."""
        ops: list[int] = []
        tables: list[tuple[str, ...]] = []
        for f in self.fields:
            if f.slot is not None:
                ops += [KEEP, f.slot]
            ops += _flatten(f.node, f.slot is not None, tables)
        return array("i", ops).tobytes(), tuple(tables)


def _flatten(node: Node, keep: bool, tables: list[tuple[str, ...]]) -> list[int]:
    if node.op == UNION:
        out = [UNION, len(node.branches)]
        for branch in node.branches:
            body = _flatten(branch, keep, tables)
            out += [len(body), *body]
        return out
    if node.op == FIXED:
        return [FIXED, node.size]
    if node.op == ENUM:
        table = -1
        if keep:
            table = len(tables)
            tables.append(node.symbols)
        return [ENUM, len(node.symbols), table]
    if node.op == KEY:
        tables.append((node.name,))
        return [KEY, node.size, len(tables) - 1]
    return [node.op]


def _node(schema: Any, field: str) -> Node:
    """The node of one Avro type (the only walk over schema JSON)."""
    if isinstance(schema, list):
        if len(schema) > MAX_BRANCHES:
            raise NotImplementedError(f"union with more than {MAX_BRANCHES} branches")
        return Node(UNION, branches=tuple(_node(branch, field) for branch in schema))
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, (dict, list)):
        return _node(kind, field)
    if kind == "string" and field in KEY_FIELDS:
        return Node(KEY, size=MAX_KEY_BYTES, name=field)
    if kind in _PRIMITIVES:
        return Node(_PRIMITIVES[kind])
    if kind == "fixed":
        return Node(FIXED, size=int(schema["size"]))
    if kind == "enum":
        symbols = tuple(schema["symbols"])
        if len(symbols) > MAX_BRANCHES:
            raise NotImplementedError(f"enum with more than {MAX_BRANCHES} symbols")
        return Node(ENUM, symbols=symbols)
    raise NotImplementedError(f"lean reader does not handle {kind!r}")


def _kept_values(node: Node) -> bool:
    """Whether the readers can return this node's value (not float, double or fixed)."""
    if node.op == UNION:
        return all(_kept_values(b) for b in node.branches)
    return node.op not in (FLOAT, DOUBLE, FIXED)


def compile_schema(writer: schemas.Schema) -> Program:
    """The program of `writer`; NotImplementedError for what the lean readers do not cover."""
    fields = writer.raw["fields"]
    if not {"session_id", "seq"} <= {f["name"] for f in fields}:
        raise NotImplementedError("writer schema lacks session_id or seq")
    out = []
    for f in fields:
        name = f["name"]
        slot = SLOTS.index(name) if name in SLOTS else None
        node = _node(f["type"], name)
        if slot is not None and not _kept_values(node):
            raise NotImplementedError(f"a kept {name} of a kind the readers do not return")
        out.append(Field(name, slot, node))
    return Program(writer.fingerprint, tuple(out))


def key_too_long_detail(field: str, size: int) -> str:
    """The detail of a ``key_too_long`` rejection (the C reader words it the same)."""
    return f"{field} is {size} bytes, over the {MAX_KEY_BYTES}-byte limit of a key"
