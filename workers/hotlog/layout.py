"""Where partitions live on disk: ``<hotlog dir>/<topic>-<partition>/``.  Pure; no I/O but listing.

The one owner of the partition directory naming: the worker (``workers.ingest.assignment``),
``kaizen-stream verify`` and ``kaizen-stream sessions`` all name and find partition
directories through these functions.

Invariants: ``parse_dir_name(dir_name(t, p)) == (t, p)`` for every topic ``t`` and partition
``p >= 0`` (a topic name may itself contain ``-``: the partition is after the last one);
:func:`partition_dirs` lists directories in (topic, partition) order, partitions numerically.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

_DIR_NAME = re.compile(r"(?P<topic>.+)-(?P<partition>[0-9]+)", re.DOTALL)


class PartitionDir(NamedTuple):
    topic: str
    partition: int
    path: Path


def dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def partition_dir(hotlog_dir: Path, topic: str, partition: int) -> Path:
    """The directory of ``topic``-``partition`` under ``hotlog_dir`` (``Settings.hotlog_dir``)."""
    return hotlog_dir / dir_name(topic, partition)


def parse_dir_name(name: str) -> tuple[str, int] | None:
    """(topic, partition) of a partition directory's name; None for any other name."""
    m = _DIR_NAME.fullmatch(name)
    return (m.group("topic"), int(m.group("partition"))) if m else None


def partition_dirs(hotlog_dir: Path, topic: str | None = None) -> list[PartitionDir]:
    """The partition directories under ``hotlog_dir`` (only ``topic``'s when given)."""
    if not hotlog_dir.is_dir():
        return []
    found = []
    for child in hotlog_dir.iterdir():
        owner = parse_dir_name(child.name)
        if owner is not None and child.is_dir() and (topic is None or owner[0] == topic):
            found.append(PartitionDir(owner[0], owner[1], child))
    return sorted(found)
