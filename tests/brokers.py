"""The test brokers: one interface over the embedded broker (tansu) and Apache Kafka.

`KAIZEN_TEST_BROKER` chooses the kind the suite runs on: `kafka` (the default:
Apache Kafka 4.x from its jars, `workers.broker.apache`) or `tansu` (the embedded
memory-only broker, `workers.broker.embedded`). Every broker a test gets has
`bootstrap`, `start()`, `stop()` and `wipe()` (the broker restarted empty, same
port) and the project's topics at `TEST_PARTITIONS`. What differs between the
kinds is what a broker remembers across `stop()`/`start()`: Apache Kafka keeps
its log; tansu forgets everything.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from workers.broker.apache import KafkaNode, missing_requirements
from workers.broker.embedded import EmbeddedBroker, free_port
from workers.broker.topics import ensure_topics

TEST_PARTITIONS = 4
KINDS = ("kafka", "tansu")


class Broker(Protocol):
    kind: str

    @property
    def bootstrap(self) -> str: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def wipe(self) -> None: ...


def broker_kind() -> str:
    kind = os.environ.get("KAIZEN_TEST_BROKER", "kafka").strip().lower() or "kafka"
    if kind not in KINDS:
        raise ValueError(f"KAIZEN_TEST_BROKER must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def unavailable(kind: str) -> str | None:
    """None when brokers of `kind` can start here, else one line saying what to do."""
    return missing_requirements() if kind == "kafka" else None


def new_broker(
    directory: Path,
    partitions: int = TEST_PARTITIONS,
    kind: str | None = None,
    with_topics: bool = True,
    kafka_properties: dict[str, str] | None = None,
) -> Broker:
    """A started broker of `kind` (default: the suite's), with the project's topics unless
    `with_topics` is False; `kafka_properties` go into an Apache Kafka node's
    server.properties."""
    kind = kind or broker_kind()
    directory.mkdir(parents=True, exist_ok=True)
    broker: Broker
    if kind == "kafka":
        broker = KafkaNode(directory / "kafka", extra=kafka_properties).start()
    else:
        broker = EmbeddedBroker(port=free_port(), log=directory / "tansu.log").start()
    try:
        if with_topics:
            asyncio.run(ensure_topics(broker.bootstrap, partitions))
    except BaseException:
        broker.stop()
        raise
    return broker
