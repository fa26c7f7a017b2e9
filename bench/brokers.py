"""Where the benchmarks run: Apache Kafka (one KRaft node) or the embedded broker, and the load.

Imported by the bench scripts (run from bench/, which is then on sys.path).
`add_broker_flag` gives a script `--broker kafka|tansu|both` (default both);
`broker_kinds` turns it into the kinds to run, in order, and stops with one
line when Apache Kafka cannot run here (no Java or no jars). `running_broker`
starts a fresh broker of one kind with the project's topics in a work dir and
stops it (and only it) after the `with` block; every run on a broker starts
from an empty one, so the figures of the two kinds are measured the same way.

`load_average` is the machine's 1/5/15-minute load, printed beside every
figure (the machine is shared; a figure means little without it).

Apache Kafka is `workers.broker.apache.KafkaNode` with its loopback settings
(`group.initial.rebalance.delay.ms=0`, small heap): the figures say what a
single-node broker on this machine gives, not a tuned production cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.broker.apache import KafkaNode, missing_requirements
from workers.broker.embedded import EmbeddedBroker, free_port
from workers.broker.topics import ensure_topics
from workers.settings import EVENTS_TOPIC

KINDS = ("kafka", "tansu")
LABELS = {"kafka": "Apache Kafka", "tansu": "embedded broker (tansu)"}


def add_broker_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        choices=[*KINDS, "both"],
        default="both",
        help="the broker to run on: Apache Kafka, the embedded broker, or both in turn "
        "(default both)",
    )


def broker_kinds(choice: str) -> list[str]:
    """The kinds `--broker` names, Apache Kafka first; SystemExit (one line) when Apache Kafka
    is asked for and cannot run here."""
    kinds = list(KINDS) if choice == "both" else [choice]
    if "kafka" in kinds:
        missing = missing_requirements()
        if missing:
            raise SystemExit(f"bench: {missing} (or pass --broker tansu)")
    return kinds


@contextmanager
def running_broker(
    kind: str, workdir: Path, partitions: int, *, topics: bool = True
) -> Iterator[str]:
    """A fresh broker of `kind` under `workdir` (with the project's topics at `partitions`
    unless `topics` is False), stopped after the block; its bootstrap address."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker: KafkaNode | EmbeddedBroker
    if kind == "kafka":
        broker = KafkaNode(workdir / f"kafka-{free_port()}").start()
    elif kind == "tansu":
        broker = EmbeddedBroker(port=free_port(), log=workdir / f"tansu-{free_port()}.log").start()
    else:
        raise ValueError(f"unknown broker kind {kind!r}")
    try:
        if topics:
            asyncio.run(ensure_topics(broker.bootstrap, partitions))
            asyncio.run(wait_for_leaders(broker.bootstrap, partitions))
        yield broker.bootstrap
    finally:
        broker.stop()


async def wait_for_leaders(bootstrap: str, partitions: int) -> None:
    """Return once every partition of kaizen.events answers ListOffsets from its leader.

    Apache Kafka acks a new topic before its leaders serve it; a producer started at once
    logs a NotLeaderForPartition retry per partition (harmless, but it buries the figures).
    aiokafka's `end_offsets` retries until the leaders answer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.end_offsets([TopicPartition(EVENTS_TOPIC, p) for p in range(partitions)])
    finally:
        await consumer.stop()


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as uptime shows them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
