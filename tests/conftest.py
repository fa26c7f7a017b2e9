"""Shared fixtures: a real embedded broker (tansu) on a free port, with the project's topics.

`broker` is one broker for the whole session; tests that need a broker of
their own (to stop and restart it) use `fresh_broker`. Every test keeps its
sessions and consumer groups unique (`unique`), so tests sharing the broker
do not see each other's data.

Hypothesis runs without a per-example deadline (the "kaizen" profile, loaded
here for every test module): tests never fail on a timing, and on a loaded
2-core machine a 200 ms deadline flakes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from workers.broker.embedded import EmbeddedBroker, free_port
from workers.broker.topics import ensure_topics

TEST_PARTITIONS = 4

settings.register_profile("kaizen", deadline=None)
settings.load_profile("kaizen")


def _start(tmp: Path) -> EmbeddedBroker:
    broker = EmbeddedBroker(port=free_port(), log=tmp / "tansu.log").start()
    asyncio.run(ensure_topics(broker.bootstrap, TEST_PARTITIONS))
    return broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    b = _start(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = _start(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
