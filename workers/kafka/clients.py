"""The one place where the project's Kafka clients are built.

Every producer, consumer and admin client (shipper, catch-up, DLQ, replay
service and client, tail, topics) and the Faust app's broker settings come
from here, from one `KafkaConnection`: every bootstrap host, the TLS/SASL
settings, the compression and a client id. Invariants:

- no client is built without the connection's security settings, and the
  SASL password is read from its file only here, when a client is built;
- producers wait for every in-sync replica (acks=all) and use the idempotent
  producer where the broker grants one; a broker that refuses InitProducerId
  (tansu, the embedded broker) gets acks=all without idempotence, said once
  in a log line per bootstrap address (`start_producer`);
- timeouts outlast a leader election (the controller moves leadership within
  a few seconds; a request waits 30 s, a send is retried for 2 min).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.metadata import MetadataRequest

from workers.kafka.config import KafkaConnection, KafkaSecurity

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "kaizen-stream"
REQUEST_TIMEOUT_MS = 30_000  # > a leader election; aiokafka's default is 40 s
DELIVERY_TIMEOUT_MS = 120_000  # a send keeps retrying across elections this long
RETRY_BACKOFF_MS = 200

# bootstrap addresses whose broker refused the idempotent producer (logged once each)
_NO_IDEMPOTENCE: set[str] = set()


def _not_init_producer_id(record: logging.LogRecord) -> bool:
    # aiokafka logs a refused InitProducerId at ERROR and raises it: `start_producer`
    # handles the error (falls back, or raises it for a one-line explanation)
    return not str(record.msg).startswith("Unexpected error during InitProducerIdRequest")


logging.getLogger("aiokafka.producer.sender").addFilter(_not_init_producer_id)


def default_client_id(role: str) -> str:
    """kaizen-stream-<role>-<host>: names the client in broker logs, quotas and ACL denials."""
    return f"{CLIENT_ID_PREFIX}-{role}-{socket.gethostname()}"


Target = KafkaConnection | str


def connection(target: Target) -> KafkaConnection:
    """A connection as is; a bootstrap string with the security settings of the environment."""
    if isinstance(target, KafkaConnection):
        return target
    from workers.settings import Settings  # the environment's security and compression

    return Settings.from_env().override(broker=target).kafka


def auth_config(security: KafkaSecurity) -> dict[str, Any]:
    """The aiokafka keyword arguments for TLS and SASL (reads the password file)."""
    config: dict[str, Any] = {"security_protocol": security.protocol}
    context = security.ssl_context()
    if context is not None:
        config["ssl_context"] = context
    if security.sasl:
        config["sasl_mechanism"] = security.mechanism
        config["sasl_plain_username"] = security.username
        config["sasl_plain_password"] = security.sasl_password()
    return config


def _common(conn: KafkaConnection, role: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": list(conn.bootstrap),
        "client_id": default_client_id(role),
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "retry_backoff_ms": RETRY_BACKOFF_MS,
        **auth_config(conn.security),
    }


def producer_config(conn: KafkaConnection, role: str, *, idempotent: bool) -> dict[str, Any]:
    """Producer settings for a replicated cluster (see the module docstring)."""
    config = _common(conn, role)
    config.update(
        acks="all",
        enable_idempotence=idempotent,
        compression_type=None if conn.compression == "none" else conn.compression,
        linger_ms=5,
    )
    # without idempotence a retried batch may be written twice: the worker dedupes on
    # (session_id, producer, seq); aiokafka keeps one batch in flight per partition, so order holds
    return config


def new_producer(target: Target, role: str = "producer", **overrides: Any) -> AIOKafkaProducer:
    """A producer not started yet, idempotent unless the broker is known to refuse it.

    Prefer `start_producer`, which finds out and falls back."""
    conn = connection(target)
    idempotent = conn.servers not in _NO_IDEMPOTENCE
    config = producer_config(conn, role, idempotent=idempotent)
    config.update(overrides)
    return AIOKafkaProducer(**config)


async def start_producer(
    target: Target, role: str = "producer", **overrides: Any
) -> AIOKafkaProducer:
    """A started producer: idempotent where the broker grants a producer id, else acks=all.

    A broker that answers InitProducerId with an error (the embedded broker does)
    gets a non-idempotent producer; the fallback is logged once per address.
    Connection and authentication errors are raised as they are.
    """
    conn = connection(target)
    idempotent = bool(overrides.get("enable_idempotence", conn.servers not in _NO_IDEMPOTENCE))
    producer = new_producer(conn, role, **{**overrides, "enable_idempotence": idempotent})
    try:
        await producer.start()
        return producer
    except (ClusterAuthorizationFailedError, TopicAuthorizationFailedError):
        await producer.stop()  # a missing ACL, not a broker without idempotence
        raise
    except KafkaError:
        # bootstrapped (metadata known) but start failed: InitProducerId was refused
        bootstrapped = bool(producer.client.cluster.brokers())
        await producer.stop()
        if not (bootstrapped and idempotent):
            raise
    except BaseException:
        await producer.stop()
        raise
    if conn.servers not in _NO_IDEMPOTENCE:
        _NO_IDEMPOTENCE.add(conn.servers)
        log.info(
            "broker %s refused the idempotent producer (InitProducerId): producing with "
            "acks=all without idempotence; the worker's (session_id, producer, seq) dedupe "
            "absorbs resends",
            conn.servers,
        )
    producer = new_producer(conn, role, **{**overrides, "enable_idempotence": False})
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


def new_consumer(
    target: Target, *topics: str, role: str = "consumer", **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer (not started) of every bootstrap host, with the security settings."""
    config = _common(connection(target), role)
    config.update(overrides)
    return AIOKafkaConsumer(*topics, **config)


def new_admin(target: Target, role: str = "admin", **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client (not started) of every bootstrap host, with the security settings."""
    config = _common(connection(target), role)
    config.pop("retry_backoff_ms")
    config.update(overrides)
    return AIOKafkaAdminClient(**config)


async def topic_partitions(client: AIOKafkaClient, topic: str) -> set[int] | None:
    """The partitions of `topic` (None: no such topic), by a metadata request for it alone
    that never auto-creates it; TopicAuthorizationFailedError when the principal may not
    see it (an all-topics request just leaves such a topic out)."""
    request = MetadataRequest([topic], allow_auto_topic_creation=False)
    response = await client.send(client.get_random_node(), request)
    cluster = ClusterMetadata()
    cluster.update_metadata(response)
    if topic in cluster.unauthorized_topics:
        raise TopicAuthorizationFailedError(topic)
    partitions: set[int] | None = cluster.partitions_for_topic(topic)
    return partitions


def faust_broker_settings(conn: KafkaConnection) -> dict[str, Any]:
    """faust.App settings: every bootstrap host, credentials, compression, client id."""
    import faust

    security = conn.security
    settings: dict[str, Any] = {
        "broker": [f"kafka://{host}" for host in conn.bootstrap],
        "broker_client_id": default_client_id("worker"),
        "broker_request_timeout": REQUEST_TIMEOUT_MS / 1000,
        "producer_request_timeout": DELIVERY_TIMEOUT_MS / 1000,
        "producer_compression_type": None if conn.compression == "none" else conn.compression,
    }
    context = security.ssl_context()
    if security.sasl:
        settings["broker_credentials"] = faust.SASLCredentials(
            username=security.username,
            password=security.sasl_password(),
            ssl_context=context,
            mechanism=security.mechanism,
        )
    elif context is not None:
        settings["broker_credentials"] = faust.SSLCredentials(context)
    return settings


def environment(conn: KafkaConnection) -> dict[str, str]:
    """KAIZEN_* variables that give a child process this connection (never the password
    itself: a password from the environment is passed on as it came)."""
    security = conn.security
    env = {
        "KAIZEN_BROKER": conn.servers,
        "KAIZEN_SECURITY_PROTOCOL": security.protocol,
        "KAIZEN_SASL_MECHANISM": security.mechanism,
        "KAIZEN_COMPRESSION": conn.compression,
        "KAIZEN_SSL_CHECK_HOSTNAME": "true" if security.check_hostname else "false",
    }
    for name, value in (
        ("KAIZEN_SASL_USERNAME", security.username),
        ("KAIZEN_SASL_PASSWORD_FILE", security.password_file),
        ("KAIZEN_SSL_CAFILE", security.cafile),
        ("KAIZEN_SSL_CERTFILE", security.certfile),
        ("KAIZEN_SSL_KEYFILE", security.keyfile),
    ):
        if value:
            env[name] = os.fspath(value)
    return env
