"""Per-partition ingest counters, their Prometheus text form (and its reading), and their
file beside the log.

Counters are cumulative over the life of the partition's data dir: the worker
loads ``<partition dir>/ingest-stats.json`` when it opens a partition and
rewrites it (not fsynced: these are statistics, not data) about once a second
and when it closes the partition, so ``kaizen-stream sessions --stats`` shows
them without a running worker. ``lag`` is a gauge: the partition's high
watermark minus the next offset to process, as last seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from workers.durable import atomic_write

FILE_NAME = "ingest-stats.json"


@dataclass(slots=True)
class Counters:
    messages: int = 0  # Kafka messages processed (not skipped as at or below the watermark)
    ingested: int = 0  # events appended, fsynced and indexed (counted at the group commit)
    duplicates: int = 0  # events skipped by the (session_id, producer, seq) dedupe
    skipped_messages: int = 0  # messages at or below the watermark (redelivered)
    dead_lettered: int = 0  # events or whole messages sent to the DLQ
    bytes: int = 0  # bytes of the events ingested (counted with them)
    flushes: int = 0  # group commits (fsync + index batch)
    lag: int = 0  # gauge

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Counters:
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in raw.items() if k in known and isinstance(v, int)})


def load(directory: Path) -> Counters:
    try:
        return Counters.from_json(json.loads((directory / FILE_NAME).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return Counters()


def save(directory: Path, counters: Counters) -> None:
    # rewritten every second: atomic for readers, no fsync needed
    atomic_write(directory / FILE_NAME, json.dumps(counters.to_json()).encode(), sync=False)


_HELP = {
    "messages": ("counter", "Kafka messages of kaizen.events processed"),
    "ingested": ("counter", "events appended to the hot log and indexed"),
    "duplicates": ("counter", "events skipped as already indexed (session_id, producer, seq)"),
    "skipped_messages": ("counter", "redelivered messages at or below the watermark"),
    "dead_lettered": ("counter", "events or messages sent to kaizen.events.dlq"),
    "bytes": ("counter", "bytes of events ingested"),
    "flushes": ("counter", "group commits: fsync of the hot log and one index batch"),
    "lag": ("gauge", "messages between the next offset to process and the high watermark"),
}


def render(per_partition: Iterable[tuple[int, Counters, bool]]) -> str:
    """Prometheus text exposition format (0.0.4) of (partition, counters, ready)."""
    rows = sorted(per_partition, key=lambda r: r[0])
    out: list[str] = []
    for name, (kind, text) in _HELP.items():
        metric = f"kaizen_ingest_{name}" + ("_total" if kind == "counter" else "")
        out.append(f"# HELP {metric} {text}")
        out.append(f"# TYPE {metric} {kind}")
        for partition, counters, _ in rows:
            out.append(f'{metric}{{partition="{partition}"}} {getattr(counters, name)}')
    out.append("# HELP kaizen_partition_ready 1 when the partition has caught up (handoff done)")
    out.append("# TYPE kaizen_partition_ready gauge")
    for partition, _, ready in rows:
        out.append(f'kaizen_partition_ready{{partition="{partition}"}} {int(ready)}')
    return "\n".join(out) + "\n"


def parse(text: str) -> dict[str, dict[int, int]]:
    """What `render` wrote, read back: metric name -> {partition: value}."""
    out: dict[str, dict[int, int]] = {}
    for line in text.splitlines():
        if line.startswith("#") or '{partition="' not in line:
            continue
        name, rest = line.split("{", 1)
        labels, value = rest.rsplit(" ", 1)
        out.setdefault(name, {})[int(labels.split('"')[1])] = int(float(value))
    return out


def totals(text: str) -> dict[str, int]:
    """Each metric of `render`'s text summed over the partitions."""
    return {name: sum(values.values()) for name, values in parse(text).items()}
