"""A failing fsync (EIO, ENOSPC): nothing appended before it is ever acknowledged.

After a failed fsync Linux may drop the dirty pages and mark them clean, so a second fsync
"succeeds" without the data ever reaching the disk (the PostgreSQL "fsyncgate" of 2018).
A log whose fsync failed must therefore refuse every later flush and append until it is
reopened (recovery reads back what really is on disk) and the source topic redelivers.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.harness import event
from workers.codec.event import decode_event
from workers.hotlog import LogFailed
from workers.hotlog import log as log_module
from workers.ingest.partition import PartitionState

from .helpers import open_log


class FailingSync:
    """``os`` for the hot log whose fdatasync fails once with ``err``, on the ``at``-th call."""

    def __init__(self, err: int, at: int = 1) -> None:
        self.err, self.at, self.calls = err, at, 0

    def fdatasync(self, fd: int) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise OSError(self.err, os.strerror(self.err))
        os.fdatasync(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_log_refuses_everything_after_a_failed_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    failing = FailingSync(err)
    monkeypatch.setattr(log_module, "os", failing)
    log = open_log(tmp_path)
    log.append(b"one", 1)
    with pytest.raises(LogFailed) as info:
        log.flush()
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == err
    assert log.durable_frames == 0
    # the retry that fsyncgate makes dangerous: it would "succeed" on Linux
    with pytest.raises(LogFailed):
        log.flush()
    with pytest.raises(LogFailed):
        log.append(b"two", 2)
    assert log.durable_frames == 0
    log.close()  # releases the directory without claiming anything durable
    with open_log(tmp_path) as again:  # reopening recovers from what the disk holds
        assert [p for _, p in again.scan()] in ([], [b"one"])


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_partition_commits_no_offset_after_a_failed_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    async def feed(state: PartitionState, offsets: range) -> None:
        for i in offsets:
            state.process(i, event("s", i), b"k")
        await state.flush()

    state = PartitionState(0, tmp_path)
    state.open()
    asyncio.run(feed(state, range(0, 3)))
    assert state.next_kafka_offset == 3  # the offset the feed commits to the group
    monkeypatch.setattr(log_module, "os", FailingSync(err))
    with pytest.raises(LogFailed):
        asyncio.run(feed(state, range(3, 6)))
    with pytest.raises(LogFailed):  # later commits fail too: they would commit 3..5 with them
        asyncio.run(feed(state, range(6, 8)))
    assert state.next_kafka_offset == 3
    assert state.store.watermark == 2
    state.close()
    monkeypatch.undo()
    # the worker restarts; Kafka redelivers from the committed offset (3)
    state = PartitionState(0, tmp_path)
    state.open()
    asyncio.run(feed(state, range(state.next_kafka_offset, 8)))
    assert [decode_event(d)["seq"] for _, d in state.read_session("s")] == list(range(8))
    state.close()
