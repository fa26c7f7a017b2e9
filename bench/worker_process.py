"""The worker process the benchmarks time: `kaizen-stream worker` with its env and its log.

Imported by the bench scripts (run from bench/, which is then on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker_env(bootstrap: str, data_dir: Path, partitions: int, **extra: str) -> dict[str, str]:
    """The environment of a worker (and of the CLI commands that talk to it)."""
    return {
        **os.environ,
        "KAIZEN_BROKER": bootstrap,
        "KAIZEN_DATA_DIR": str(data_dir),
        "KAIZEN_PARTITIONS": str(partitions),
        **extra,
    }


@contextmanager
def running_worker(
    env: dict[str, str],
    log: Path,
    *,
    web_port: int,
    session_timeout: float = 6,
    loglevel: str | None = "warning",
    root: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process for the `with` block, output to `log`; stopped (SIGTERM) after it.
    `root`: the checkout whose `workers` package runs (this one by default)."""
    args = [sys.executable, "-m", "workers", "worker", "--web-port", str(web_port)]
    args += ["--session-timeout", str(session_timeout)]
    if loglevel is not None:
        args += ["--loglevel", loglevel]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
