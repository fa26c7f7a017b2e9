"""The spool file format and its crash rules, without a broker."""

from __future__ import annotations

import contextlib
from pathlib import Path

from workers.hooks.spool import MAGIC, Spool, encode_frame, iter_frames


def fields(session: str = "s") -> dict[str, object]:
    return {"session_id": session, "ts_ms": 1, "kind": "hook", "payload": "{}"}


def test_append_seal_and_read(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    for _ in range(3):
        spool.append(fields())
    assert list(spool.sealed_frames()) == []  # the open segment is never read
    spool.seal()
    frames = list(spool.sealed_frames())
    assert [f.fields()["seq"] for f in frames] == [0, 1, 2]
    assert spool.pending()
    spool.write_commit(frames[-1].segment, frames[-1].end)
    spool.drop_before(frames[-1].segment, frames[-1].end)
    assert not spool.pending() and list(spool.sealed_frames()) == []
    assert spool.append(fields()) == 3  # seq survives segment turnover


def test_partial_commit_resumes_after_the_pointer(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    for _ in range(5):
        spool.append(fields())
    spool.seal()
    frames = list(spool.sealed_frames())
    spool.write_commit(frames[1].segment, frames[1].end)  # acked up to seq 1, then "crash"
    again = Spool(str(tmp_path))
    assert [f.fields()["seq"] for f in again.sealed_frames()] == [2, 3, 4]


def test_torn_and_corrupt_frames_are_skipped_and_reported(tmp_path: Path) -> None:
    good = [encode_frame(b'{"n":%d}' % i) for i in range(4)]
    bad_crc = bytearray(good[1])
    bad_crc[-2] ^= 0xFF
    torn = good[2][:7]
    data = good[0] + bytes(bad_crc) + b"garbage" + torn + good[3]
    warnings: list[str] = []
    frames = list(iter_frames(data, 0, 7, warnings.append))
    assert [f.fields()["n"] for f in frames] == [0, 3]
    assert warnings and all("segment 7" in w for w in warnings)
    assert frames[-1].end == len(data)
    # a torn tail (a hook killed mid-write) loses only that frame
    frames = list(iter_frames(good[0] + good[1][:-3], 0, 0, warnings.append))
    assert len(frames) == 1
    assert data.count(MAGIC) >= 4


def test_full_spool_drops_with_a_warning(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    assert spool.append(fields(), limit=1) == 0
    assert spool.append(fields(), limit=1) is None
    assert "spool full" in (tmp_path / "warnings.log").read_text()
    assert spool.append(fields(), limit=10**9) == 1  # no seq was used by the dropped event


def test_shipper_lock_probe(tmp_path: Path) -> None:
    import fcntl
    import os

    spool = Spool(str(tmp_path))
    spool.ensure()
    assert not spool.shipper_running()
    fd = os.open(spool.shipper_lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert spool.shipper_running()
    finally:
        os.close(fd)


def test_backlog_stays_in_few_segments_while_sending_fails(tmp_path: Path) -> None:
    import asyncio

    from workers.broker.embedded import free_port
    from workers.shipper.shipper import Shipper

    spool = Spool(str(tmp_path))
    shipper = Shipper(spool, f"127.0.0.1:{free_port()}", quiet=True)

    async def rounds() -> None:
        for _ in range(4):
            spool.append(fields())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(shipper.round(), 3)
            await shipper._close()

    asyncio.run(rounds())
    assert len(spool.segments()) == 2
    assert sum(1 for _ in spool.sealed_frames()) == 1  # the first sealed; the rest wait open


def test_warnings_log_is_bounded(tmp_path: Path) -> None:
    from workers.hooks import spool as spool_mod

    spool = Spool(str(tmp_path))
    spool.ensure()
    for _ in range(3):
        spool.warn("x" * 600_000)
    assert (tmp_path / "warnings.log.1").exists()
    assert (tmp_path / "warnings.log").stat().st_size <= spool_mod.LOG_MAX + 700_000
