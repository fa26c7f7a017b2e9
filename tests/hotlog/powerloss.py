"""Power-loss states of a directory, the way ALICE (OSDI 2014) and CrashMonkey build them.

`Recorder` replaces the ``os`` module seen by the hot log and `workers.durable` with a
proxy that does every call for real and records, for files under one root, what a power
loss may or may not keep: data writes and truncations (per inode), fsync/fdatasync of a
file, creations, renames and removals of directory entries, and fsync of a directory.
The test adds its own markers to the same trace: ``Ack`` (an offset was acknowledged) and
``Index`` (a RocksDB index commit returned; a copy of the index directory taken then).

`crash_states(trace, k)` then builds the states a power cut after the first ``k`` operations
can leave (the file system model of ALICE's "ext4-like" abstraction, kept simple):

* a file's data is durable up to its last fsync; each write or truncation after it may be
  kept or lost independently, in any order: a lost write inside the file reads as zeros
  (the block was allocated, its data never reached the disk) or, at the end, shortens the
  file;
* a directory entry change (create, rename, unlink) is durable once its directory was
  fsynced after it; until then the directory holds either the entries as of its last fsync
  or all changes (metadata is journaled in order);
* the RocksDB index comes back as of any write that returned before the cut, back to its
  last synced write (``WriteOptions.sync``; RocksDB's WAL recovery keeps a prefix of its
  writes, and a synced write makes it and every write before it durable); the states
  built use the latest write and, when that one was not synced, the one before. The index
  is never recorded at the os level: `RecordingDb` copies its directory right after each
  write returned (the copy holds every write up to that one).

`Recorder(mutate_fsync=True)` makes every fsync of the recorded code a no-op that is not
recorded either: the mutation the test must catch.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

_real_os = os


@dataclass(frozen=True)
class Create:
    path: str
    ino: int


@dataclass(frozen=True)
class Write:
    ino: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class Trunc:
    ino: int
    size: int


@dataclass(frozen=True)
class Sync:
    ino: int


@dataclass(frozen=True)
class Rename:
    src: str
    dst: str


@dataclass(frozen=True)
class Unlink:
    path: str


@dataclass(frozen=True)
class DirSync:
    path: str


@dataclass(frozen=True)
class Ack:
    offset: int


@dataclass(frozen=True)
class Index:
    snapshot: Path
    synced: bool  # the write was synced (its WAL fsynced, with every write before it)


Op = Create | Write | Trunc | Sync | Rename | Unlink | DirSync | Ack | Index


@dataclass
class Trace:
    root: str
    base: dict[str, bytes]  # files present (and durable) when recording started
    ops: list[Op] = field(default_factory=list)


class Recorder:
    """The recording ``os`` proxy; `install` it into modules, `mark` test events."""

    def __init__(self, root: Path, *, mutate_fsync: bool = False) -> None:
        self.root = os.path.abspath(root)
        base = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                p = os.path.join(dirpath, f)
                base[p] = Path(p).read_bytes()
        self.trace = Trace(self.root, base)
        self.mutate_fsync = mutate_fsync
        self._lock = threading.Lock()
        self._next_ino = 0
        self._names: dict[str, int] = {}
        for p in base:
            self._names[p] = self._new_ino()
        self._fds: dict[int, int | str] = {}  # fd -> inode, or directory path
        self.enabled = True

    def _new_ino(self) -> int:
        self._next_ino += 1
        return self._next_ino

    def base_inodes(self) -> dict[str, int]:
        return {p: i + 1 for i, p in enumerate(self.trace.base)}

    def _watched(self, path: str) -> bool:
        return self.enabled and (path == self.root or path.startswith(self.root + os.sep))

    def mark(self, op: Op) -> None:
        with self._lock:
            self.trace.ops.append(op)

    # ---- the proxied calls
    def open(self, path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        p = os.path.abspath(os.fspath(path))
        existed = os.path.exists(p)
        fd = _real_os.open(path, flags, mode, **kw)
        if self._watched(p):
            with self._lock:
                if os.path.isdir(p):
                    self._fds[fd] = p
                else:
                    if not existed or p not in self._names:
                        self._names[p] = ino = self._new_ino()
                        self.trace.ops.append(Create(p, ino))
                    self._fds[fd] = self._names[p]
                    if flags & os.O_TRUNC:
                        self.trace.ops.append(Trunc(self._names[p], 0))
        return fd

    def dup(self, fd: int) -> int:
        new = _real_os.dup(fd)
        with self._lock:
            if fd in self._fds:
                self._fds[new] = self._fds[fd]
        return new

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
        _real_os.close(fd)

    def write(self, fd: int, data: Any) -> int:
        ino = self._fds.get(fd)
        if not isinstance(ino, int):
            return _real_os.write(fd, data)
        with self._lock:
            at = _real_os.lseek(fd, 0, os.SEEK_CUR)
            n = _real_os.write(fd, data)
            self.trace.ops.append(Write(ino, at, bytes(memoryview(data)[:n])))
        return n

    def pwrite(self, fd: int, data: Any, offset: int) -> int:
        n = _real_os.pwrite(fd, data, offset)
        ino = self._fds.get(fd)
        if isinstance(ino, int):
            self.mark(Write(ino, offset, bytes(memoryview(data)[:n])))
        return n

    def ftruncate(self, fd: int, size: int) -> None:
        _real_os.ftruncate(fd, size)
        ino = self._fds.get(fd)
        if isinstance(ino, int):
            self.mark(Trunc(ino, size))

    def _sync(self, fd: int, real: Any) -> None:
        if self.mutate_fsync:
            return
        real(fd)
        what = self._fds.get(fd)
        if isinstance(what, int):
            self.mark(Sync(what))
        elif isinstance(what, str):
            self.mark(DirSync(what))

    def fsync(self, fd: int) -> None:
        self._sync(fd, _real_os.fsync)

    def fdatasync(self, fd: int) -> None:
        self._sync(fd, _real_os.fdatasync)

    def replace(self, src: Any, dst: Any) -> None:
        s, d = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(dst))
        with self._lock:
            _real_os.replace(src, dst)
            if self._watched(d) and s in self._names:
                self._names[d] = self._names.pop(s)
                self.trace.ops.append(Rename(s, d))

    rename = replace

    def unlink(self, path: Any, **kw: Any) -> None:
        p = os.path.abspath(os.fspath(path))
        with self._lock:
            _real_os.unlink(path, **kw)
            if self._watched(p) and p in self._names:
                del self._names[p]
                self.trace.ops.append(Unlink(p))

    remove = unlink

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_os, name)


def install(recorder: Recorder, modules: list[ModuleType], monkeypatch: Any) -> None:
    """Make ``modules`` call the recorder for ``os`` and ``Path.unlink``."""
    for mod in modules:
        monkeypatch.setattr(mod, "os", recorder)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        try:
            recorder.unlink(self)
        except FileNotFoundError:
            if not missing_ok:
                raise

    monkeypatch.setattr(Path, "unlink", unlink)


class RecordingDb:
    """Wraps a store's Rdict: after each ``write``, copy the index directory into the trace."""

    def __init__(self, db: Any, directory: Path, copies: Path, recorder: Recorder) -> None:
        self._db, self._directory, self._copies, self._rec = db, directory, copies, recorder
        self.writes = 0

    def write(self, batch: Any, opts: Any = None) -> None:
        if opts is None:
            self._db.write(batch)
        else:
            self._db.write(batch, opts)
        if self._rec.enabled:
            self.writes += 1
            copy = self._copies / str(self.writes)
            shutil.copytree(self._directory, copy)
            self._rec.mark(Index(copy, bool(opts is not None and opts.sync)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


# ---------------------------------------------------------------------- crash states


@dataclass
class State:
    label: str
    files: dict[str, bytes]  # absolute path (under the root) -> content
    index: Path | None  # the copy of the index directory to restore, None for no index
    acked: int  # offsets [0, acked) were acknowledged before the cut


def _apply(content: bytearray, op: Write | Trunc, zero: bool = False) -> None:
    if isinstance(op, Trunc):
        del content[op.size :]
        content.extend(bytes(max(0, op.size - len(content))))
        return
    end = op.offset + len(op.data)
    if len(content) < end:
        content.extend(bytes(end - len(content)))
    content[op.offset : end] = bytes(len(op.data)) if zero else op.data


@dataclass
class _Inode:
    synced: list[Write | Trunc] = field(default_factory=list)
    unsynced: list[Write | Trunc] = field(default_factory=list)


def _content(node: _Inode, keep: set[int], zero_lost: bool) -> bytes:
    """The durable ops, then unsynced op i if i in keep (else zeros when ``zero_lost``)."""
    out = bytearray()
    for op in node.synced:
        _apply(out, op)
    for i, op in enumerate(node.unsynced):
        if i in keep:
            _apply(out, op)
        elif zero_lost and isinstance(op, Write):
            _apply(out, op, zero=True)
    return bytes(out)


def crash_states(
    trace: Trace, base_inodes: dict[str, int], k: int, holes_per_file: int = 4
) -> Iterator[State]:
    """The states a power cut after ``trace.ops[:k]`` may leave (see the module docstring)."""
    nodes: dict[int, _Inode] = {ino: _Inode() for ino in base_inodes.values()}
    base_data = {base_inodes[p]: d for p, d in trace.base.items()}
    for ino, data in base_data.items():
        nodes[ino].synced.append(Write(ino, 0, data))
    live = dict(base_inodes)  # name -> inode, every change applied
    durable: dict[str, int] = dict(base_inodes)  # name -> inode as of the last dir fsyncs
    indexes: list[Index] = []
    acked = 0
    for op in trace.ops[:k]:
        if isinstance(op, Create):
            live[op.path] = op.ino
            nodes[op.ino] = _Inode()
        elif isinstance(op, Write | Trunc):
            nodes[op.ino].unsynced.append(op)
        elif isinstance(op, Sync):
            n = nodes[op.ino]
            n.synced += n.unsynced
            n.unsynced = []
        elif isinstance(op, Rename):
            live[op.dst] = live.pop(op.src)
        elif isinstance(op, Unlink):
            live.pop(op.path, None)
        elif isinstance(op, DirSync):
            for name in [n for n in durable if os.path.dirname(n) == op.path]:
                del durable[name]
            durable.update({n: i for n, i in live.items() if os.path.dirname(n) == op.path})
        elif isinstance(op, Ack):
            acked = max(acked, op.offset + 1)
        elif isinstance(op, Index):
            indexes.append(op)
    index_choices: list[tuple[str, Path | None]] = [("no index", None)]
    if indexes:
        index_choices = [("index latest", indexes[-1].snapshot)]
    if len(indexes) >= 2 and not indexes[-1].synced:
        index_choices.append(("index one write behind", indexes[-2].snapshot))

    def files(names: dict[str, int], keep: dict[int, set[int]], zero: bool) -> dict[str, bytes]:
        return {
            n: _content(nodes[i], keep.get(i, set(range(len(nodes[i].unsynced)))), zero)
            for n, i in names.items()
        }

    dirty = [i for i in set(live.values()) | set(durable.values()) if nodes[i].unsynced]
    data_choices: list[tuple[str, dict[int, set[int]], bool]] = [
        ("all data", {}, False),
        ("unsynced data lost", {i: set() for i in dirty}, False),
        ("unsynced data lost, sizes kept", {i: set() for i in dirty}, True),
    ]
    for ino in dirty:
        n = len(nodes[ino].unsynced)
        if n < 2:
            continue
        # one lost write with later ones kept: a hole (blocks written back out of order)
        step = max(1, (n - 1) // holes_per_file)
        for lost in range(0, n - 1, step):
            keep = set(range(n)) - {lost}
            data_choices.append((f"inode {ino}: write {lost} of {n} lost", {ino: keep}, True))
        data_choices.append((f"inode {ino}: half kept", {ino: set(range(n // 2))}, False))
    for dname, names in (("dirs as fsynced", durable), ("dirs as changed", live)):
        for label, keep, zero in data_choices:
            for iname, snap in index_choices:
                yield State(f"{dname}; {label}; {iname}", files(names, keep, zero), snap, acked)


def materialize(state: State, root: str, into: Path, index_dir: Path) -> None:
    """Write ``state`` under ``into`` (paths re-rooted from ``root``); restore its index."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    for name, data in state.files.items():
        rel = os.path.relpath(name, root)
        assert not rel.startswith(".."), f"{name} is not under {root}"
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if state.index is not None:
        shutil.copytree(state.index, index_dir)
