"""`kaizen-stream topics create|check` and the worker's topic check, on a real broker.

Each test starts a broker of its own with no topics (`bare_broker`), so that it
decides how they are created. The worker tests run `kaizen-stream worker` as a process.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokers import TEST_PARTITIONS, Broker
from tests.e2e.test_end_to_end import as_messages, kaizen_env, make_sessions, produce, replay
from tests.procs import stop
from workers.broker import topics
from workers.broker.apache import KafkaCluster
from workers.broker.embedded import EmbeddedBroker, free_port
from workers.settings import (
    ALL_TOPICS,
    EVENTS_TOPIC,
    REPLAY_REQUESTS_TOPIC,
    REPLAY_TOPIC,
    SESSIONS_TOPIC,
    Settings,
    SettingsError,
)


def test_specs_follow_the_settings() -> None:
    settings = Settings(partitions=6, replication_factor=3, replay_retention_ms=60_000)
    specs = {s.name: s for s in topics.topic_specs(settings)}
    assert list(specs) == list(ALL_TOPICS)
    assert {(s.partitions, s.replication_factor) for s in specs.values()} == {(6, 3)}
    assert {s.configs["min.insync.replicas"] for s in specs.values()} == {"2"}
    assert {s.configs["unclean.leader.election.enable"] for s in specs.values()} == {"false"}
    assert specs[EVENTS_TOPIC].configs["retention.ms"] == "-1"
    assert specs[REPLAY_TOPIC].configs["retention.ms"] == "60000"
    assert specs[REPLAY_REQUESTS_TOPIC].configs["message.timestamp.type"] == "LogAppendTime"
    assert specs[SESSIONS_TOPIC].configs["cleanup.policy"] == "compact"
    assert "max.message.bytes" in specs[EVENTS_TOPIC].configs
    assert "max.message.bytes" not in specs[REPLAY_REQUESTS_TOPIC].configs


def test_min_insync_replicas() -> None:
    assert [Settings(replication_factor=rf).min_insync for rf in (1, 2, 3, 5)] == [1, 1, 2, 2]
    assert Settings(replication_factor=3, min_insync_replicas=3).min_insync == 3
    with pytest.raises(SettingsError, match="cannot exceed"):
        _ = Settings(replication_factor=1, min_insync_replicas=2).min_insync
    env = {"KAIZEN_REPLICATION_FACTOR": "3", "KAIZEN_MIN_INSYNC_REPLICAS": "1"}
    assert Settings.from_env(env).min_insync == 1
    with pytest.raises(SettingsError, match="KAIZEN_REPLICATION_FACTOR must be a whole number"):
        Settings.from_env({"KAIZEN_REPLICATION_FACTOR": "three"})


def test_problems_name_each_difference() -> None:
    spec = topics.Topic("t", 4, 3, {"min.insync.replicas": "2", "retention.ms": "-1"})
    same = topics.Topic("t", 4, 3, {"min.insync.replicas": "2", "retention.ms": "-1"})
    assert topics.problems(spec, same) == []
    assert topics.problems(spec, None) == ["t does not exist"]
    other = topics.Topic("t", 6, 1, {"min.insync.replicas": "1"})
    assert topics.problems(spec, other) == [
        "t has 6 partitions, want 4",
        "t has replication factor 1, want 3",
        "t min.insync.replicas=1, want 2",
        "t retention.ms=(unset), want -1",
    ]


def kaizen(
    broker: Broker, tmp_path: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        env=kaizen_env(broker, tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("kaizen-stream: ")
    return lines[0]


def test_create_twice_then_check(bare_broker: Broker, tmp_path: Path) -> None:
    first = kaizen(bare_broker, tmp_path, "topics", "create", "--partitions", "3")
    assert first.returncode == 0, first.stderr
    assert [f"{name}: created" for name in ALL_TOPICS] == first.stdout.splitlines()[:-1]
    again = kaizen(bare_broker, tmp_path, "topics", "create", "--partitions", "3")
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout
    check = kaizen(bare_broker, tmp_path, "topics", "check", "--partitions", "3")
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert len(lines) == len(ALL_TOPICS)
    for name, line in zip(ALL_TOPICS, lines, strict=True):
        assert line.startswith(f"{name}: exists, 3 partitions, replication factor 1, "), line
    events = lines[ALL_TOPICS.index(EVENTS_TOPIC)]
    assert "retention.ms=-1" in events and "max.message.bytes=16777216" in events
    assert "message.timestamp.type=LogAppendTime" in lines[ALL_TOPICS.index(REPLAY_REQUESTS_TOPIC)]


def test_create_reports_a_mismatch_and_changes_nothing(bare_broker: Broker, tmp_path: Path) -> None:
    assert kaizen(bare_broker, tmp_path, "topics", "create", "--partitions", "3").returncode == 0
    line = one_line_error(
        kaizen(
            bare_broker, tmp_path, "topics", "create", "--partitions", "5",
            "--max-message-bytes", "1048576",
        )
    )  # fmt: skip
    assert f"{EVENTS_TOPIC} has 3 partitions, want 5" in line
    assert f"{EVENTS_TOPIC} max.message.bytes=16777216, want 1048576" in line
    check = kaizen(bare_broker, tmp_path, "topics", "check", "--partitions", "3")
    assert check.returncode == 0, check.stderr


def test_check_names_a_missing_topic(bare_broker: Broker, tmp_path: Path) -> None:
    settings = Settings(broker=bare_broker.bootstrap, partitions=2)
    present = [t for t in ALL_TOPICS if t != REPLAY_REQUESTS_TOPIC]
    asyncio.run(topics.create_topics(settings, present))
    result = kaizen(bare_broker, tmp_path, "topics", "check", "--partitions", "2")
    assert f"{REPLAY_REQUESTS_TOPIC}: missing" in result.stdout.splitlines()
    assert f"{REPLAY_REQUESTS_TOPIC} does not exist" in one_line_error(result)
    # checking never creates it (a metadata request naming it would, on this broker)
    assert kaizen(bare_broker, tmp_path, "topics", "check", "--partitions", "2").returncode == 1


def test_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port())  # never started
    line = one_line_error(kaizen(broker, tmp_path, "topics", "check"))
    assert broker.bootstrap in line


def test_min_insync_above_replication_factor_is_refused(
    bare_broker: Broker, tmp_path: Path
) -> None:
    result = kaizen(
        bare_broker, tmp_path, "topics", "create", "--replication-factor", "2",
        "--min-insync-replicas", "3",
    )  # fmt: skip
    assert result.returncode == 2 and "cannot exceed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_worker_refuses_events_and_requests_with_other_counts(
    bare_broker: Broker, tmp_path: Path
) -> None:
    others = [t for t in ALL_TOPICS if t != REPLAY_REQUESTS_TOPIC]
    asyncio.run(topics.create_topics(Settings(broker=bare_broker.bootstrap, partitions=4), others))
    asyncio.run(
        topics.create_topics(
            Settings(broker=bare_broker.bootstrap, partitions=6), [REPLAY_REQUESTS_TOPIC]
        )
    )
    result = kaizen(bare_broker, tmp_path, "worker", "--web-port", str(free_port()))
    line = one_line_error(result)
    assert f"{EVENTS_TOPIC} has 4 partitions but {REPLAY_REQUESTS_TOPIC} has 6" in line
    check = one_line_error(kaizen(bare_broker, tmp_path, "topics", "check", "--partitions", "4"))
    assert f"{EVENTS_TOPIC} has 4 partitions but {REPLAY_REQUESTS_TOPIC} has 6" in check


def test_worker_refuses_a_missing_topic(bare_broker: Broker, tmp_path: Path) -> None:
    settings = Settings(broker=bare_broker.bootstrap, partitions=4)
    asyncio.run(topics.create_topics(settings, [EVENTS_TOPIC, REPLAY_REQUESTS_TOPIC]))
    line = one_line_error(kaizen(bare_broker, tmp_path, "worker", "--web-port", str(free_port())))
    assert "missing" in line and "kaizen-stream topics create" in line
    assert SESSIONS_TOPIC in line and REPLAY_TOPIC in line


def test_replays_route_by_the_brokers_partition_count(
    bare_broker: Broker, tmp_path: Path, unique: str
) -> None:
    """Topics with 6 partitions, KAIZEN_PARTITIONS=4 (kaizen_env): every session replays.
    Routing by KAIZEN_PARTITIONS would look for most sessions on a partition that does
    not hold them."""
    created = kaizen(bare_broker, tmp_path, "topics", "create", "--partitions", "6")
    assert created.returncode == 0, created.stderr
    rng = random.Random(unique)
    sessions = make_sessions(f"six-{unique}", 16, rng)
    asyncio.run(produce(bare_broker.bootstrap, as_messages(sessions, rng)))
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", "--web-port", str(free_port())],
            env=kaizen_env(bare_broker, tmp_path / "data"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for sid, produced in sessions.items():
                result = replay(bare_broker, tmp_path / "data", sid, "--timeout", "120")
                assert result.returncode == 0, (sid, result.stderr)
                replayed = [json.loads(x) for x in result.stdout.splitlines() if x.strip()]
                assert replayed == produced, sid
        finally:
            stop(proc)
    assert "sessions are routed by 6" in log_path.read_text()


def test_create_and_check_on_a_three_broker_cluster(
    kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    """Replication factor 3 on three Apache Kafka nodes: min.insync.replicas follows (2),
    a second create is fine, and a check that wants another replication factor names it."""
    created = kaizen(kafka_cluster, tmp_path, "topics", "create", "--replication-factor", "3")
    assert created.returncode == 0, created.stderr
    assert [f"{name}: created" for name in ALL_TOPICS] == created.stdout.splitlines()[:-1]
    again = kaizen(kafka_cluster, tmp_path, "topics", "create", "--replication-factor", "3")
    assert again.returncode == 0 and "created" not in again.stdout, again.stderr
    check = kaizen(kafka_cluster, tmp_path, "topics", "check", "--replication-factor", "3")
    assert check.returncode == 0, check.stderr
    assert len(check.stdout.splitlines()) == len(ALL_TOPICS)
    for line in check.stdout.splitlines():
        assert f"{TEST_PARTITIONS} partitions, replication factor 3," in line, line
        assert "min.insync.replicas=2" in line and "unclean.leader.election.enable=false" in line
    line = one_line_error(
        kaizen(kafka_cluster, tmp_path, "topics", "check", "--replication-factor", "2")
    )
    assert f"{EVENTS_TOPIC} has replication factor 3, want 2" in line
    assert f"{EVENTS_TOPIC} min.insync.replicas=2, want 1" in line
