"""The replay agent: `register(app, manager)` wires replay and the HTTP views into the Faust app.

The agent consumes `kaizen.replay.requests` as raw bytes (the request is
decoded inside, so a bad body is dead-lettered instead of crashing the
agent's stream) and hands each request to `ReplayService`, which answers it
in a task of its own. The request topic has the partition count of
`kaizen.events` and is keyed by session id, so the worker that owns the
session's events partition receives the request.

Beside the agent, `ReplayService.run_fast_path` reads the same (owned)
request partitions with a 20 ms fetch wait, because Faust's worker consumer
long-polls for a fixed 1.5 s and tansu holds a fetch that long even when data
arrives; a request id is started once, by whichever path sees it first. The
agent alone dead-letters bad requests and commits request offsets.

A request is acknowledged once its task has started, not once it is
answered: a worker that dies mid-replay leaves the requester to time out and
ask again (replies are idempotent to read: they are filtered by request id).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from mode import Service

from workers.kafka.config import KafkaConnection
from workers.replay.interfaces import ManagerLike
from workers.replay.service import ReplayService
from workers.settings import REPLAY_REQUESTS_TOPIC

AGENT_NAME = "kaizen-replay"

log = logging.getLogger(__name__)


def bootstrap_of(app: faust.App) -> KafkaConnection | str:
    """The app's Kafka connection (workers/app.py sets it), else its brokers as host:port,..."""
    connection: KafkaConnection | None = getattr(app, "kaizen_connection", None)
    if connection is not None:
        return connection
    servers = []
    for url in app.conf.broker:
        servers.append(f"{url.host or '127.0.0.1'}:{url.port or 9092}")
    return ",".join(servers)


def register(app: faust.App, manager: ManagerLike, *, target_prefix: str = "") -> ReplayService:
    """Define the replay agent and the HTTP views on `app`; returns the service (for tests).

    `target_prefix`: replies may also go to topics starting with it (KAIZEN_REPLAY_TOPIC_PREFIX).
    """
    service = ReplayService(bootstrap_of(app), manager, target_prefix=target_prefix)

    requests = app.topic(
        REPLAY_REQUESTS_TOPIC,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(requests, name=AGENT_NAME)
    async def replay_requests(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await service.handle(
                event.value,
                key=event.key,
                partition=message.partition,
                offset=message.offset,
                timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            )

    class ReplayLifecycle(Service):
        """Runs the low-latency request path; stops replays and the producer with the app."""

        @Service.task
        async def _fast_path(self) -> None:
            try:
                await service.run_fast_path()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The agent still answers every request, only with Faust's fetch latency.
                log.exception("replay fast path stopped")

        async def on_stop(self) -> None:
            await service.stop()

    app.service(ReplayLifecycle)

    from workers.web.views import register_views  # the web layer depends on replay, not back

    register_views(app, manager, service)
    return service
