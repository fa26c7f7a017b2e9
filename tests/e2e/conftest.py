"""The e2e tests' worker: `kaizen-stream worker` as a process of its own, on the shared
broker, with its data dir in the test's tmp_path (`<tmp_path>/data`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import Broker
from tests.e2e.test_end_to_end import kaizen_env
from tests.procs import stop
from workers.broker.embedded import free_port


@pytest.fixture
def worker(broker: Broker, tmp_path: Path, unique: str) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    env = kaizen_env(broker, tmp_path / "data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "worker", "--web-port", str(free_port())],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    stop(proc)
    log.close()
