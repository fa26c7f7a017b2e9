"""The offset base of a broker incarnation, kept in ``<partition dir>/ingest-epoch``.

The embedded broker keeps topics in memory: restarted, it numbers a partition
from offset 0 again, while the hot log already holds frames up to, say, 5000
and refuses smaller offsets. The log and the index therefore use *log
offsets*: ``base + kafka_offset``, with ``base`` fixed per broker incarnation.
When the worker decides the broker is a new incarnation (see
``catchup.CatchUp``), it starts a new epoch whose base is one past
everything the log and index have seen, so no new record is ever at or below
the watermark, and redelivered events are caught by the (session_id, seq)
dedupe alone.

Invariants: the file is replaced atomically (write, fsync, rename, fsync dir)
before the first append of the new epoch; bases only grow; a missing file means
base 0 (the first incarnation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workers.durable import atomic_write

FILE_NAME = "ingest-epoch"


@dataclass(frozen=True, slots=True)
class Epoch:
    base: int = 0
    #: Kafka offset and CRC-32C of the first message ingested in this epoch (None: none yet);
    #: a broker that has another message there (or none) is a new incarnation.
    probe_offset: int | None = None
    probe_crc: int | None = None


def load(directory: Path) -> Epoch:
    try:
        raw = json.loads((directory / FILE_NAME).read_text())
    except FileNotFoundError:
        return Epoch()
    return Epoch(int(raw["base"]), raw.get("probe_offset"), raw.get("probe_crc"))


def store(directory: Path, epoch: Epoch) -> None:
    data = json.dumps(
        {"base": epoch.base, "probe_offset": epoch.probe_offset, "probe_crc": epoch.probe_crc}
    ).encode()
    atomic_write(directory / FILE_NAME, data)
