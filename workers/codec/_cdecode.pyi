"""Types of the C reader (`_cdecode.c`); `workers.codec.lean` documents the behaviour."""

from collections.abc import Callable

class Reader:
    def __init__(
        self,
        ops: bytes,
        tables: tuple[tuple[str, ...], ...],
        defaults: tuple[object, ...],
        error: Callable[[str, str], BaseException],
    ) -> None: ...
    def __call__(self, data: bytes) -> tuple[str, int, int, str, str | None, str]: ...

def decode_items(
    items: list[bytes],
    readers: dict[bytes, object],
    max_bytes: int,
    decoded: type[tuple[object, ...]],
    events: list[object],
    fallback: Callable[[bytes], object],
) -> None: ...
