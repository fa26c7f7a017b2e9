"""Types of the C frame encoder (`_cframe.c`); `workers.hotlog.frame` documents the behaviour."""

from collections.abc import Sequence
from typing import TypeVar

_Buffer = bytes | bytearray | memoryview
_T = TypeVar("_T", bound=tuple[object, ...])

#: 1 when frame CRCs come from the SSE4.2 loop, 0 when from the crc32c package
hardware: int

def set_hardware(flag: object, /) -> bool: ...
def encode_batch(payloads: Sequence[_Buffer], offset: int, /) -> tuple[bytes, list[int]]: ...
def locations(cls: type[_T], segment: int, start: int, lens: Sequence[int], /) -> list[_T]: ...
