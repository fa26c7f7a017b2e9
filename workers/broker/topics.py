"""Creating the project's topics, and waiting until the broker answers metadata."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from workers.kafka import clients
from workers.settings import ALL_TOPICS, REPLAY_REQUESTS_TOPIC, SESSIONS_TOPIC

#: topic configs beyond the broker's defaults. Replay requests are stamped by the broker
#: (LogAppendTime): the worker judges a request's age by it, never by the sender's clock.
#: The embedded broker ignores the setting and keeps the producer's time.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    REPLAY_REQUESTS_TOPIC: {"message.timestamp.type": "LogAppendTime"},
    # the latest summary per session is all anyone reads (workers/analytics/team.py)
    SESSIONS_TOPIC: {"cleanup.policy": "compact"},
}


async def ensure_topics(
    bootstrap: clients.Target,
    partitions: int,
    topics: Iterable[str] = ALL_TOPICS,
    timeout: float = 30.0,
) -> None:
    """Create every missing topic with `partitions` partitions; existing ones are kept."""
    deadline = time.monotonic() + timeout
    while True:
        admin = clients.new_admin(bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [
                            NewTopic(
                                t,
                                num_partitions=partitions,
                                replication_factor=1,
                                topic_configs=TOPIC_CONFIGS.get(t, {}),
                            )
                            for t in missing
                        ]
                    )
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
