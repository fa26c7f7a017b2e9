"""Shared fixtures: real brokers on free ports with the project's topics, and the markers.

`KAIZEN_TEST_BROKER=kafka|tansu` (default kafka) chooses the broker kind the suite
runs on (`tests/brokers.py`). `broker` is one broker for the whole session;
tests that stop, restart or wipe a broker use `fresh_broker`, a broker of their
own (`bare_broker`: one without topics); `kafka_cluster` is three Apache Kafka
nodes (KRaft, loopback) for failover tests, whatever the kind. Every test keeps
its sessions and consumer groups unique (`unique`), so tests sharing the broker
do not see each other's data.

Markers: every test that uses a broker fixture is marked `broker` here, so
`pytest -m "not broker"` runs the unit tests alone. `tansu` marks tests of the
embedded broker's own behaviour (they run only with KAIZEN_TEST_BROKER=tansu);
`kafka` marks tests that need Apache Kafka whatever the kind.

Hypothesis runs without a per-example deadline (the "kaizen" profile, loaded
here for every test module): tests never fail on a timing, and on a loaded
2-core machine a 200 ms deadline flakes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.brokers import TEST_PARTITIONS, Broker, broker_kind, new_broker, unavailable
from workers.broker.apache import KafkaCluster, missing_requirements

__all__ = ["TEST_PARTITIONS"]

#: fixtures that need Apache Kafka whatever KAIZEN_TEST_BROKER says (`secured`: tests/security)
KAFKA_FIXTURES = frozenset({"kafka_cluster", "kafka_cluster_module", "secured"})
BROKER_FIXTURES = frozenset({"broker", "fresh_broker", "bare_broker"}) | KAFKA_FIXTURES

settings.register_profile("kaizen", deadline=None)
settings.load_profile("kaizen")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kind = broker_kind()
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        tansu = item.get_closest_marker("tansu") is not None
        kafka = item.get_closest_marker("kafka") is not None or bool(names & KAFKA_FIXTURES)
        if names & BROKER_FIXTURES or tansu or kafka:
            item.add_marker(pytest.mark.broker)
        if kafka:
            item.add_marker(pytest.mark.kafka)
        if tansu and kind != "tansu":
            item.add_marker(
                pytest.mark.skip(reason="embedded-broker test: KAIZEN_TEST_BROKER=tansu")
            )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Say in one line what Apache Kafka needs, before any test starts, when it is missing."""
    if any(i.get_closest_marker("broker") for i in session.items):
        problem = unavailable(broker_kind())
        if problem:
            pytest.exit(f"cannot run the broker tests: {problem}", returncode=4)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = new_broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[Broker]:
    b = new_broker(tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture
def bare_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own without the project's topics (to test creating them)."""
    b = new_broker(tmp_path / "broker", with_topics=False)
    yield b
    b.stop()


def _cluster(directory: Path) -> Iterator[KafkaCluster]:
    problem = missing_requirements()
    if problem:
        pytest.skip(problem)
    cluster = KafkaCluster(directory).start()
    yield cluster
    cluster.kill()  # its data is thrown away: no controlled shutdowns to wait for


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes (small heaps), min.insync.replicas=2, no topics yet.

    Skipped with the one-line reason on a machine without Apache Kafka when the suite
    runs on tansu (on kafka, `pytest_collection_finish` has stopped the run already).
    """
    yield from _cluster(tmp_path / "cluster")


@pytest.fixture(scope="module")
def kafka_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """`kafka_cluster` shared by a module's tests (a cluster start is the slowest part of
    a failover test): each test leaves every node running, and keeps its sessions unique."""
    yield from _cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
