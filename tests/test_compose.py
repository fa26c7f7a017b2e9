"""docker-compose.yml and `.ci/compose-check`: what `make test` does with and without a
compose tool, and that both stacks provision their topics with `kaizen-stream topics create`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / ".ci" / "compose-check"


def _run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """compose-check with a PATH that has no docker, docker-compose or apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return subprocess.run(
        ["bash", str(CHECK)],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_compose_tool_the_check_is_skipped_in_one_line(tmp_path: Path) -> None:
    result = _run_check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("compose-check: skipped")
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""


def test_in_ci_a_missing_compose_tool_fails(tmp_path: Path) -> None:
    result = _run_check(tmp_path, KAIZEN_CI="1")
    assert result.returncode == 1
    assert "docker-compose" in result.stderr and len(result.stderr.splitlines()) == 1


def _config(*profile: str) -> str:
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        tool = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        tool = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor docker-compose is installed (CI has one)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIZEN_", "KAFKA_"))}
    return subprocess.run(
        [*tool, "-f", str(ROOT / "docker-compose.yml"), *profile, "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def _service(config: str, name: str) -> str:
    """The text of one service in `config`'s output."""
    lines = config.splitlines()
    start = lines.index(f"  {name}:")
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("  ") and lines[i][2] != " "
        ),
        len(lines),
    )
    return "\n".join(lines[start:end])


def test_both_stacks_run_kafka_4_and_create_topics_with_the_command() -> None:
    single = _config()
    assert "apache/kafka:4.1.1" in _service(single, "kafka")
    topics = _service(single, "topics")
    assert "- topics\n" in topics and "- create" in topics
    cluster = _config("--profile", "cluster")
    topics = _service(cluster, "cluster-topics")
    assert "- topics\n" in topics and "- create" in topics
    assert "KAIZEN_REPLICATION_FACTOR: '3'" in topics or "KAIZEN_REPLICATION_FACTOR: 3" in topics
    assert "KAIZEN_MIN_INSYNC_REPLICAS: '2'" in topics or "KAIZEN_MIN_INSYNC_REPLICAS: 2" in topics
    for node in ("kafka-1", "kafka-2", "kafka-3"):
        assert "apache/kafka:4.1.1" in _service(cluster, node)
    worker = _service(cluster, "cluster-worker-1")
    assert "kafka-1:19092,kafka-2:19092,kafka-3:19092" in worker
