"""`kaizen-stream broker` and the command line's error handling, as a user runs them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from workers.broker.embedded import free_port, port_in_use
from workers.settings import ALL_TOPICS


def kaizen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def _partitions(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(ALL_TOPICS))
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


@pytest.mark.tansu  # `kaizen-stream broker` is the embedded broker
def test_broker_starts_detached_creates_topics_and_stops(tmp_path: Path) -> None:
    port = free_port()
    env = {"KAIZEN_BROKER": f"127.0.0.1:{port}", "KAIZEN_DATA_DIR": str(tmp_path)}
    started = kaizen("broker", "--partitions", "3", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert port_in_use("127.0.0.1", port)
        assert asyncio.run(_partitions(f"127.0.0.1:{port}")) == dict.fromkeys(ALL_TOPICS, 3)
    finally:
        stopped = kaizen("broker", "--stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not port_in_use("127.0.0.1", port)


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = kaizen("broker", "--broker", f"127.0.0.1:{port}", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "already in use" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments_are_one_line_errors() -> None:
    for args in (["broker", "--partitions", "zero"], ["no-such-command"], ["broker", "--nope"]):
        result = kaizen(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("kaizen-stream: ") and result.stderr.count("\n") == 1
    bad_env = kaizen("broker", env={"KAIZEN_PARTITIONS": "many"})
    assert bad_env.returncode == 2 and "KAIZEN_PARTITIONS" in bad_env.stderr
