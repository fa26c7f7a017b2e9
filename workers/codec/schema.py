"""Avro schemas of the project: loading, parsing and CRC-64-AVRO fingerprints.

Every schema a writer may have used must stay loadable, so that old messages
decode: the current version lives in `schemas/<name>.avsc`, older ones in
`schemas/history/<name>.v<N>.avsc`. A schema's fingerprint (Avro spec: the
64-bit Rabin fingerprint of its Parsing Canonical Form, little-endian) names
it on the wire.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

_EMPTY = 0xC15D213AA4D7A795


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _make_table()


def crc64_avro(data: bytes) -> int:
    """The Avro spec's 64-bit Rabin fingerprint."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def schemas_dir() -> Path:
    """`schemas/` of a source checkout, or the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "schemas", here / "_schemas"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no schemas/ directory beside the workers package")


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


class Schema:
    """A parsed schema with its fingerprint: the unit the codecs work with."""

    __slots__ = ("canonical", "fingerprint", "name", "parsed", "raw")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.parsed: Any = parse_schema(raw, _force=True)
        self.name: str = str(raw["namespace"]) + "." + str(raw["name"])
        self.canonical: str = to_parsing_canonical_form(raw)
        self.fingerprint: bytes = crc64_avro(self.canonical.encode()).to_bytes(8, "little")

    def __repr__(self) -> str:
        return f"Schema({self.name}, {self.fingerprint.hex()})"


@cache
def current(name: str) -> Schema:
    """The current (reader) version of `schemas/<name>.avsc`."""
    return Schema(load_json(schemas_dir() / f"{name}.avsc"))


@cache
def history(name: str) -> tuple[Schema, ...]:
    """Every version of `name` a writer may have used, the current one first."""
    older = sorted((schemas_dir() / "history").glob(f"{name}.v*.avsc"))
    return (current(name), *(Schema(load_json(p)) for p in older))
