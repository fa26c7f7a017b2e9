"""What replay needs from the worker, as Protocols: the partition manager and its states.

The replay agent and the web views code against these shapes, not against the
ingest classes, so they type-check on their own and any manager with these
methods (the real `workers.ingest.partitions.PartitionManager`, or a test
double) fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class SessionInfoLike(Protocol):
    session_id: str
    partition: int
    count: int
    last_seq: int
    first_ts_ms: int
    last_ts_ms: int
    agent: str
    model: str | None

    def to_json(self) -> dict[str, object]: ...


class StoreLike(Protocol):
    def session(self, session_id: str) -> Any: ...

    def sessions(self) -> Iterable[Any]: ...


class PartitionStateLike(Protocol):
    partition: int

    @property
    def store(self) -> Any: ...

    def read_session(
        self, session_id: str, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[tuple[int, bytes]]: ...


class ManagerLike(Protocol):
    def get(self, partition: int) -> Any: ...

    def owned(self) -> list[int]: ...

    async def wait_ready(self, partition: int, timeout: float) -> Any: ...

    def partition_for(self, session_id: str) -> int: ...
