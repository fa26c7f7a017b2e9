"""`kaizen-stream verify [--repair]` as a subprocess over a real data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workers.hotlog.verify import repair, verify_all

from .helpers import open_log

ROOT = Path(__file__).parents[2]


def _verify(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    env.pop("KAIZEN_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "workers", "verify", "--data-dir", str(data_dir), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def _make(data_dir: Path, partitions: int = 2) -> list[Path]:
    dirs = []
    for p in range(partitions):
        d = data_dir / "hotlog" / f"kaizen.events-{p}"
        with open_log(d, p, segment_bytes=4096) as log:
            for off in range(40):
                log.append_batch([b"v" * 100, b"w" * 60], off)
        dirs.append(d)
    return dirs


def test_clean_log_exits_zero(tmp_path: Path) -> None:
    _make(tmp_path)
    res = _verify(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "kaizen.events-0" in res.stdout and "kaizen.events-1" in res.stdout
    assert "80" in res.stdout  # frames per partition
    assert "bad range:" not in res.stdout


def test_mid_file_corruption_is_reported_and_not_repairable(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    seg = sorted(dirs[1].glob("*.seg"))[1]
    raw = bytearray(seg.read_bytes())
    raw[512 + 30] ^= 0x10  # inside the first frame
    seg.write_bytes(bytes(raw))
    base = int(seg.stem)
    res = _verify(tmp_path)
    assert res.returncode != 0
    line = f"bad range: kaizen.events-1 segment {base} bytes [512, 628)"
    assert line in res.stdout, res.stdout
    res = _verify(tmp_path, "--repair")
    assert res.returncode != 0 and line in res.stdout
    # frames after the bad one stay readable
    with open_log(dirs[1], 1) as log:
        assert sum(1 for _ in log.scan()) == 79


def test_repair_fixes_a_torn_tail(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    seg = sorted(dirs[0].glob("*.seg"))[-1]
    size = seg.stat().st_size
    with seg.open("r+b") as f:
        f.truncate(size - 10)
    res = _verify(tmp_path)
    assert res.returncode != 0
    assert f"segment {int(seg.stem)} bytes [{size - 76}, {size - 10}) torn tail" in res.stdout
    res = _verify(tmp_path, "--repair")
    assert res.returncode == 0, res.stdout
    assert "repaired" in res.stdout
    # the index owner's rebuild ran for the repaired partition only
    assert "index rebuilt: kaizen.events-0" in res.stdout
    assert "kaizen.events-1" not in res.stdout.split("index rebuilt")[-1]
    assert seg.stat().st_size == size - 76
    assert _verify(tmp_path).returncode == 0
    with open_log(dirs[0]) as log:
        assert log.recovery.truncated_bytes == 0
        assert sum(1 for _ in log.scan()) == 79


def test_repair_hook_returns_repaired_partitions(tmp_path: Path) -> None:
    dirs = _make(tmp_path, partitions=3)
    seg = sorted(dirs[2].glob("*.seg"))[-1]
    with seg.open("ab") as f:
        f.write(b"\x00\x00\x01partial")
    assert [v.corrupt for v in verify_all(tmp_path / "hotlog")] == [False, False, True]
    assert repair(tmp_path / "hotlog") == [dirs[2]]
    assert not any(v.corrupt for v in verify_all(tmp_path / "hotlog"))


def test_a_running_writer_is_not_repaired(tmp_path: Path) -> None:
    dirs = _make(tmp_path, partitions=1)
    with open_log(dirs[0]) as log:
        log.append(b"live", 1000)
        (verdict,) = verify_all(tmp_path / "hotlog", repair=True)
        assert verdict.live and verdict.corrupt and not verdict.repaired


def test_missing_data_dir_is_a_cli_error(tmp_path: Path) -> None:
    res = _verify(tmp_path / "nope")
    assert res.returncode == 2
    assert res.stderr.startswith("kaizen-stream: ")


def test_plain_verify_takes_no_lock_and_creates_nothing(tmp_path: Path) -> None:
    from workers.hotlog.log import LOCK_NAME
    from workers.hotlog.verify import verify_partition

    d = _make(tmp_path, 1)[0]
    (d / LOCK_NAME).unlink()
    assert not verify_partition(d).live
    assert not (d / LOCK_NAME).exists()
    with open_log(d) as log:  # a writer holds the directory: seen, not disturbed
        v = verify_partition(d)
        assert v.live and not v.corrupt
        log.append(b"still writing", 1000)
        log.flush()


def test_repair_refuses_in_one_line_while_a_worker_holds_the_data_dir(tmp_path: Path) -> None:
    from workers.hotlog.owner import hold_for_worker

    _make(tmp_path)
    fd = hold_for_worker(tmp_path / "hotlog")  # what a running worker holds
    try:
        res = _verify(tmp_path, "--repair")
    finally:
        os.close(fd)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker is running" in lines[0], res.stderr
    res = _verify(tmp_path, "--repair")  # the worker is gone: repair goes ahead
    assert res.returncode == 0, res.stdout + res.stderr


def test_lock_ids_of_proc_locks() -> None:
    from workers.hotlog.owner import _lock_ids

    text = (
        "1: FLOCK  ADVISORY  WRITE 29822 fe:00:9978331 0 EOF\n"
        "2: -> FLOCK  ADVISORY  READ 7 08:01:12 0 EOF\n"
    )
    assert _lock_ids(text) == {"fe:00:9978331", "08:01:12"}
