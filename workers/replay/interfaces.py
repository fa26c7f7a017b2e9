"""What replay needs from the worker, as a Protocol: the partition manager.

The replay agent and the web views code against this shape, not against the
ingest classes, so they type-check on their own and any manager with these
methods (the real `workers.ingest.assignment.PartitionManager`, or a test
double) fits.
"""

from __future__ import annotations

from typing import Any, Protocol


class ManagerLike(Protocol):
    def get(self, partition: int) -> Any: ...

    def owned(self) -> list[int]: ...

    async def wait_ready(self, partition: int, timeout: float) -> Any: ...

    def partition_for(self, session_id: str) -> int: ...
