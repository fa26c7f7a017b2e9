"""The Faust app of a worker: ingest agent, partition manager, replay agent, web views.

``faust -A workers.app worker`` uses the module-level ``app`` (settings from the
environment); ``kaizen-stream worker`` builds its own with `create_app`.

Invariants: one consumer group (the app id) holds ``kaizen.events`` and
``kaizen.replay.requests``; both have the same partition count, so Faust's
co-partitioning assignor gives partition N of both to the same worker, the one
whose hot log serves it. Both entry points check this at start and route
sessions by the broker's count (`workers.broker.topics.route_by_broker`). The
assignor is sticky (it keeps a member's previous partitions when it can), so
handoffs are rare. Offsets are committed only for
durable events: Faust never commits the events topic (its consumer does not fetch it);
the live feed (workers/ingest/feed.py) commits each partition's offset after its group
commit, through Faust's consumer, the group's member.
Every Kafka client (Faust's, the catch-up consumers, the replay service's)
connects through workers/kafka/clients.py with the same settings.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import faust
from faust import web
from faust.tables import TableManager as FaustTableManager

from workers.analytics.counters import render as usage_metrics
from workers.ingest.agent import register_ingest
from workers.ingest.assignment import PartitionManager
from workers.ingest.config import IngestConfig
from workers.kafka import clients
from workers.kafka.acls import WORKER_GROUP
from workers.replay.agent import register as register_replay
from workers.settings import EVENTS_TOPIC, SESSIONS_TOPIC, Settings
from workers.web import security as web_security

log = logging.getLogger(__name__)

APP_ID = WORKER_GROUP  # the consumer group the documented ACLs grant
DEFAULT_WEB_PORT = 6066

app: faust.App  # built on first access (see __getattr__ below)


class TableManager(FaustTableManager):  # type: ignore[misc]
    """Faust's table manager without the 1 s pause it takes when the worker starts.

    Faust pauses so that tables declared while the app starts are registered before it
    subscribes. This app declares no Faust tables (its state is the hot log and RocksDB)
    and declares its topics and agents in `create_app`, so the pause only added a second to
    every start, and so to every handoff (bench/bench_handoff.py)."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    """The worker's Faust app. Overrides: any Faust setting, plus ``ingest_config``
    (IngestConfig), ``events_topic`` and ``replay`` (False to leave the replay agent out)."""
    ingest_config: IngestConfig = overrides.pop("ingest_config", None) or IngestConfig()
    events_topic: str = overrides.pop("events_topic", EVENTS_TOPIC)
    with_replay: bool = overrides.pop("replay", True)
    connection = settings.kafka
    conf: dict[str, Any] = {
        **clients.faust_broker_settings(connection),
        "datadir": str(settings.data_dir / "faust"),
        "store": "memory://",
        "topic_partitions": settings.partitions,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        "broker_commit_interval": 0.5,
        "consumer_max_fetch_size": 32 << 20,
        "broker_max_poll_records": 2000,
        "stream_buffer_maxsize": 8192,
        "web_port": DEFAULT_WEB_PORT,
        "web_bind": "0.0.0.0",
        "web_enabled": True,
        "TableManager": TableManager,
        # Faust's check that every assigned partition is fetched would log errors for the
        # events topic, which its consumer never fetches (workers/ingest/feed.py)
        "stream_processing_timeout": 10.0 * 365 * 24 * 3600,
        **web_security.faust_web_settings(settings.web),
    }
    conf.update(overrides)
    app = faust.App(conf.pop("id", APP_ID), **conf)
    group_id = app.conf.id

    manager = PartitionManager(
        settings,
        topic=events_topic,
        group_id=group_id,
        config=ingest_config,
    )
    app.kaizen_manager = manager  # type: ignore[attr-defined]
    app.kaizen_connection = connection  # type: ignore[attr-defined]
    if ingest_config.aggregates:
        sessions = app.topic(SESSIONS_TOPIC, key_serializer="raw", value_serializer="raw")

        async def publish_summary(session_id: str, data: bytes) -> Awaitable[Any]:
            # the delivery, awaited for the ack: only then may the summary be marked published
            return await sessions.send(key=session_id.encode(), value=data)

        manager.publish_summary = publish_summary
        from workers.web.team import register_team_views

        register_team_views(app, connection, manager)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        await manager.on_partitions_assigned(set(args[0] if args else kwargs["assigned"]))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        await manager.on_partitions_revoked(set(args[0] if args else kwargs["revoked"]))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _shutdown(sender: Any, **kwargs: Any) -> None:
        # a clean stop commits what is durable while the group's member is still there
        await manager.drain()

    app.service(manager)  # type: ignore[arg-type]  # an instance is fine at runtime
    register_ingest(app, manager)

    @app.page("/metrics", name="kaizen-metrics")
    async def _metrics(self: web.View, request: web.Request) -> web.Response:
        if settings.web.metrics_token and not web_security.authorized(
            request.headers, settings.web.token
        ):
            return web_security.unauthorized(self)
        text = manager.render_metrics() + usage_metrics(manager.summary_counters())
        return self.text(text, content_type="text/plain; version=0.0.4")

    if with_replay:
        register_replay(app, manager, target_prefix=settings.replay_topic_prefix)
    return app


def __getattr__(name: str) -> Any:
    # `faust -A workers.app worker` wants `app`; build it only then, not on every import
    if name == "app":
        global app
        from workers.broker.topics import route_by_broker

        # as `kaizen-stream worker` does: route by the broker's partition count
        app = create_app(route_by_broker(Settings.from_env(), log.warning))
        return app
    raise AttributeError(name)
