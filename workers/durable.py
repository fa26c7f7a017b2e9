"""Durable small files: fsync a directory, replace a file atomically. Stdlib only.

`atomic_write` is the one way the project replaces a small file (checkpoints,
commit pointers, epochs, settings, counters): write a temporary file beside
it, fsync it, rename it over the target, fsync the directory. A crash leaves
either the old file or the new one, never a mix. The temporary name carries
the pid, so concurrent writers (several hook processes) never share one.
The hook path imports this module, so it imports nothing but `os`.
"""

from __future__ import annotations

import os


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, sync: bool = True
) -> None:
    """Replace `path` with `data` atomically; durable (file and directory) when `sync`.

    `sync=False` still replaces atomically (readers never see half a file) but may lose
    the new content in a power cut: for caches and counters that are rewritten anyway.
    """
    target = os.fspath(path)
    tmp = f"{target}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if sync:
        fsync_dir(os.path.dirname(target) or ".")
