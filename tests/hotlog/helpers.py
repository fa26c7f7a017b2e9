"""Helpers for the hot log tests: build logs with known frame boundaries."""

from __future__ import annotations

from pathlib import Path

from workers.hotlog import Location, PartitionLog
from workers.hotlog.segment import HEADER_SIZE

TOPIC = "kaizen.events"
PARTITION = 0


def open_log(directory: Path, partition: int = PARTITION, **kwargs: object) -> PartitionLog:
    return PartitionLog.open(directory, topic=TOPIC, partition=partition, **kwargs)  # type: ignore[arg-type]


def build(directory: Path, payloads: list[bytes], *, batch: int = 1) -> list[Location]:
    """A one-segment log holding ``payloads`` (``batch`` per offset); their locations."""
    locs: list[Location] = []
    with open_log(directory, segment_bytes=1 << 30) as log:
        for i in range(0, len(payloads), batch):
            locs += log.append_batch(payloads[i : i + batch], 100 + i)
    assert all(loc.segment == 100 for loc in locs)
    assert locs[0].position == HEADER_SIZE
    return locs


def frame_end(loc: Location) -> int:
    return loc.position + loc.length + 16
