"""Who may write under a hot log directory: running workers, or one `verify --repair`.

Two levels of ``flock``:

* each partition directory has ``LOCK``, held exclusively by its open
  :class:`~workers.hotlog.log.PartitionLog` (one writer per partition);
* the hot log directory has ``WORKERS``: a worker holds it *shared* for its whole life
  (:func:`hold_for_worker`), ``verify --repair`` takes it *exclusive* without waiting
  (:func:`lock_for_repair`) and refuses when it cannot. A worker that starts during a
  repair waits for it instead of failing to open a partition.

Plain ``verify`` takes neither lock and creates nothing: taking even a shared lock on a
partition's ``LOCK`` makes the worker's non-blocking exclusive open of that partition fail.
It asks :func:`flock_held` (``/proc/locks``, read only) whether a writer holds a directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

WORKERS_LOCK = "WORKERS"


def hold_for_worker(hotlog_dir: Path) -> int:
    """Take the shared worker lock of ``hotlog_dir`` (waiting out a repair); keep the fd open."""
    hotlog_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(hotlog_dir / WORKERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        log.warning("waiting for `kaizen-stream verify --repair` to finish in %s", hotlog_dir)
        fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def lock_for_repair(hotlog_dir: Path) -> int | None:
    """The exclusive worker lock of ``hotlog_dir`` as an open fd, or None if a worker runs."""
    return try_exclusive(hotlog_dir / WORKERS_LOCK)


def try_exclusive(path: Path) -> int | None:
    """An exclusive flock on ``path`` (created if missing) as an open fd, or None when another
    process holds it; never waits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _lock_ids(text: str) -> set[str]:
    """``major:minor:inode`` of every lock listed in ``/proc/locks`` text (pure)."""
    ids = set()
    for line in text.splitlines():
        for token in line.split():
            parts = token.split(":")
            if len(parts) == 3 and parts[2].isdigit() and all(parts[:2]):
                ids.add(token)
    return ids


def flock_held(path: Path) -> bool | None:
    """Does any process hold a lock on ``path``? None when it cannot be told. Reads only."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    try:
        with open("/proc/locks") as f:
            text = f.read()
    except OSError:
        return None
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}" in _lock_ids(text)
