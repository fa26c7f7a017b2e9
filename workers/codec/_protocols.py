"""Typed interfaces of the codecs, so a faster implementation can slot in behind them."""

from __future__ import annotations

from typing import Any, Protocol


class RecordCodec(Protocol):
    """Encodes and decodes one record type in Avro single-object encoding."""

    @property
    def fingerprint(self) -> bytes: ...

    def encode(self, record: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> dict[str, Any]: ...
