"""`kaizen-stream worker`: run one worker (the Faust app) in this process until SIGINT/SIGTERM.

The worker joins the consumer group, ingests its partitions of kaizen.events
into the hot log under the data dir, answers replays, and serves /metrics and
the session views on its web port. A clean stop (Ctrl-C, SIGTERM) flushes and
commits what it has ingested, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from workers.cli.errors import CliError
from workers.cli.options import add_settings_arguments, positive_int, settings_from
from workers.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument(
        "--web-port", type=positive_int, default=6066, metavar="P", help="web server port"
    )
    parser.add_argument(
        "--web-bind",
        default=os.environ.get("KAIZEN_WEB_BIND", "0.0.0.0"),
        metavar="ADDR",
        help="address of the web server (KAIZEN_WEB_BIND; default %(default)s, so a container's "
        "published port reaches it; 127.0.0.1 keeps it on this machine)",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="consumer group session timeout in seconds (a dead worker's partitions move "
        "after it; a new group waits about half of it before the first assignment)",
    )
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="static group membership id (KAIZEN_WORKER_ID; default: hostname + a hash of the "
        "data dir); a worker back with the same id within the session timeout keeps its "
        "partitions with no rebalance",
    )
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])


def check_kafka(settings: Settings) -> tuple[Settings, str | None]:
    """Wait until a broker answers (one line per attempt), then check at once what the
    worker needs of it: its ACLs, its topics, and the cluster id. Returns the settings
    routing sessions by the partition count the broker reports, and the cluster id (None:
    unknown). CliError naming the cause when the credentials, TLS settings or ACLs cannot
    work, or a topic is missing or miscounted (no traceback, no Faust start)."""
    from aiokafka.errors import KafkaError

    from workers.broker.topics import TopicsError, routed_by
    from workers.kafka.errors import KafkaAccessError, KafkaTransient

    # each failure is reported in one line; aiokafka's own log lines would repeat it
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                partitions, cluster = asyncio.run(_broker_facts(settings))
                return routed_by(settings, partitions, _say), cluster
            except KafkaTransient as exc:
                _say(f"{exc} (attempt {attempt}; retrying)")
            except KafkaAccessError as exc:
                raise CliError(f"worker: {exc}", 1) from None
            except TopicsError as exc:
                raise CliError(f"worker: {exc}", 1) from None
            except KafkaError as exc:
                _say(f"{settings.broker} does not answer ({exc}); attempt {attempt}, retrying")
            time.sleep(min(2.0 * attempt, 10.0))
    finally:
        aiokafka_log.setLevel(level)


async def _broker_facts(settings: Settings) -> tuple[int, str | None]:
    """(kaizen.events' partition count, the cluster id), asked at once beside the access
    check; the access check's error first, as when they were asked one after the other."""
    from workers.broker.cluster import cluster_id
    from workers.broker.topics import worker_partitions
    from workers.kafka.acls import WORKER_GROUP, topics_of
    from workers.kafka.errors import check_access

    # the worker role's topics (workers/kafka/acls.py): events and replay requests read in
    # its group; dead letters, replay answers and summaries written. Checked now, because
    # a refused write would otherwise surface only later, from inside Faust.
    access, partitions, cluster = await asyncio.gather(
        check_access(
            settings.kafka,
            read=topics_of("worker", "Read"),
            write=topics_of("worker", "Write"),
            group=WORKER_GROUP,
        ),
        worker_partitions(settings.kafka),
        cluster_id(settings.kafka),
        return_exceptions=True,
    )
    for outcome in (access, partitions, cluster):
        if isinstance(outcome, BaseException):
            raise outcome
    assert isinstance(partitions, int) and not isinstance(cluster, BaseException)
    return partitions, cluster


def static_instance_id(settings: Settings, web_port: int, cluster: str | None) -> str | None:
    """The worker's ``group.instance.id``, or None where the broker mishandles static members
    (`cluster`: the cluster id it reports)."""
    from workers.broker.cluster import static_membership_works

    if not static_membership_works(cluster):
        log.info("the embedded broker: joining the group as a dynamic member")
        return None
    instance_id = settings.group_instance_id(web_port)
    log.info("joining the group as static member %s", instance_id)
    return instance_id


def _say(line: str) -> None:
    print(f"kaizen-stream worker: {line}", file=sys.stderr)


def _worker_class(settings: Settings) -> type[Any]:
    import faust

    from workers.kafka.acls import topics_of
    from workers.kafka.errors import OneLineRefusals, refusal_of

    class Worker(faust.Worker):  # type: ignore[misc]  # faust is untyped here
        """faust.Worker for a missing ACL met at run time (a write refused after the start
        check): its log shows one line naming it, not tracebacks, and the worker stops
        cleanly (as on SIGTERM: only durable work is committed, so what could not be
        written is read again after a restart) to exit 1, rather than crash."""

        def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(app, *args, **kwargs)
            self.stopped_for: BaseException | None = None
            app.kaizen_manager.stops_for = self.stop_for

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            for handler in logger.handlers:
                handler.addFilter(
                    OneLineRefusals(settings.kafka.security, topics_of("worker", "Write"))
                )

        def stop_for(self, exc: BaseException) -> bool:
            refusal = refusal_of(exc)
            if refusal is None:
                return False
            if self.stopped_for is None:
                self.stopped_for = refusal
                log.error("%r", refusal)  # the one line naming it (OneLineRefusals)
                log.info("stopping for the missing ACL above; the worker exits 1")
                # the message whose write was refused is never acked: stop without waiting
                # for it (Faust's wait_empty would wait forever); safe offsets are committed
                self.app.conf.stream_wait_empty = False
                self._schedule_shutdown(signal.SIGTERM)
            return True

    return Worker


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args).override(worker_id=args.worker_id)
    if args.session_timeout <= 1.0:
        raise CliError("--session-timeout must be more than 1 second")
    settings, cluster = check_kafka(settings)
    from workers.app import create_app  # heavy (Faust): only now
    from workers.hotlog.owner import hold_for_worker

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # held for the worker's life: `verify --repair` refuses while it is (workers.hotlog.owner)
    hold_for_worker(settings.hotlog_dir)
    # static membership: a worker back within the session timeout keeps its partitions with
    # no rebalance (docs/OPERATIONS.md, "Consumer group"); not on the embedded broker
    instance_id = static_instance_id(settings, args.web_port, cluster)
    app = create_app(
        settings,
        consumer_group_instance_id=instance_id,
        web_port=args.web_port,
        web_bind=args.web_bind,
        broker_session_timeout=args.session_timeout,
        broker_heartbeat_interval=min(1.0, args.session_timeout / 5),
    )
    worker_class = _worker_class(settings)
    worker = worker_class(app, loglevel=args.loglevel, quiet=True, workdir=str(settings.data_dir))
    # No progress spinner: at --loglevel warning or error Faust drives it from a DEBUG-level
    # handler on the root logger, which makes every debug call of aiokafka, mode and Faust
    # build and dispatch a record (about one per message ingested, docs/ARCHITECTURE.md)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
        if worker.stopped_for is not None:
            return 1
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 1 if worker.stopped_for is not None else 0
