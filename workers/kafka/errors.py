"""One line that names why a Kafka client cannot work: credentials, TLS, listener, ACL.

aiokafka hides why a bootstrap failed (it logs the cause and raises "Unable to
bootstrap"), so `explain` connects once more itself, host by host, and reads
the real error: a refused TCP connection, a SASL authentication failure, a
certificate that does not verify, a listener that speaks TLS when the client
does not (or the reverse). Authorization errors name the principal and the
topic or group. Pure mapping (`describe_*`) is separate from the probing.

`explained(conn)` turns any of these failures inside its block into a
`KafkaAccessError` whose message is that line: commands print it (no
traceback), the worker logs it, the shipper logs it and keeps its spool.

`check_access` is the start check: the connection, Read and Write on topics
(the broker's authorized operations for them, `workers/kafka/operations.py`:
nothing is read or written; a fetch at a topic's end where the broker does not
report them), the consumer group; one admin client, the checks at once. For
what is refused later, while a process runs, `OneLineRefusals` (a log
filter) turns every record about a missing ACL into its one line, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from workers.errors import KaizenError
from workers.kafka import clients, operations
from workers.kafka.acls import Grant, kafka_acls_command
from workers.kafka.clients import auth_config
from workers.kafka.config import KafkaConnection, KafkaSecurity, SecurityError

PROBE_TIMEOUT_S = 10.0
COORDINATOR_WAIT_S = 30.0
ACL_HINT = "ask the Kafka operator for the ACLs in docs/OPERATIONS.md (Security)"


class KafkaAccessError(KaizenError, RuntimeError):
    """Kafka cannot be used as configured; the message is one line naming the cause."""


class KafkaTransient(KafkaAccessError):
    """No broker answers (not started yet, down, a wrong address), or an error that a
    fresh connection does not explain: worth a retry."""


def _who(security: KafkaSecurity) -> str:
    if security.sasl:
        return f"user {security.username!r}"
    if security.certfile:
        return f"the client certificate {security.certfile}"
    return "this client (no credentials)"


def describe_authorization(exc: KafkaError, security: KafkaSecurity) -> str | None:
    """The line for an authorization error, None for any other error."""
    what = ", ".join(str(a) for a in exc.args if a) if exc.args else ""
    if isinstance(exc, TopicAuthorizationFailedError):
        target = f"topic {what}" if what else "a topic it needs"
        return f"{_who(security)} is not authorized for {target} (missing ACL): {ACL_HINT}"
    if isinstance(exc, GroupAuthorizationFailedError):
        target = f"consumer group {what}" if what else "its consumer group"
        return f"{_who(security)} is not authorized for {target} (missing ACL): {ACL_HINT}"
    if isinstance(exc, ClusterAuthorizationFailedError):
        return (
            f"{_who(security)} lacks a cluster permission, or Write on any topic for a "
            f"producer (missing ACL): {ACL_HINT}"
        )
    return None


def describe_sasl_failure(host: str, security: KafkaSecurity) -> str:
    source = (
        f"KAIZEN_SASL_PASSWORD_FILE {security.password_file}"
        if security.password_file
        else "KAIZEN_SASL_PASSWORD"
    )
    return (
        f"SASL {security.mechanism} authentication as {security.username!r} failed at {host}: "
        f"wrong password or unknown user (check KAIZEN_SASL_USERNAME and {source})"
    )


def describe_certificate(host: str, exc: ssl.SSLCertVerificationError) -> str:
    reason = exc.verify_message or str(exc)
    if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
        return (
            f"the TLS certificate of {host} does not name that host ({reason}): connect by a "
            "name the certificate holds"
        )
    return (
        f"the TLS certificate of {host} is not trusted ({reason}): set KAIZEN_SSL_CAFILE to "
        "the CA certificate that signed the broker's"
    )


def describe_listener(host: str, security: KafkaSecurity, speaks_tls: bool | None) -> str | None:
    """The line when the client's protocol does not match the listener's, else None."""
    if speaks_tls is None:
        return None
    if speaks_tls and not security.tls:
        return (
            f"{host} is a TLS listener but KAIZEN_SECURITY_PROTOCOL is {security.protocol}: "
            "set it to SSL or SASL_SSL (with KAIZEN_SSL_CAFILE), or use the broker's "
            "plaintext port"
        )
    if not speaks_tls and security.tls:
        return (
            f"{host} does not speak TLS (a PLAINTEXT or SASL_PLAINTEXT listener) but "
            f"KAIZEN_SECURITY_PROTOCOL is {security.protocol}: use the broker's TLS port, "
            "or set it to PLAINTEXT or SASL_PLAINTEXT"
        )
    if security.tls:
        return (
            f"{host} closed the connection after the TLS handshake: its listener wants "
            f"{'no SASL (SSL)' if security.sasl else 'SASL (SASL_SSL)'} or a client certificate "
            "(KAIZEN_SSL_CERTFILE, KAIZEN_SSL_KEYFILE); check KAIZEN_SECURITY_PROTOCOL"
        )
    return (
        f"{host} closed the connection: its listener may want SASL "
        f"(KAIZEN_SECURITY_PROTOCOL=SASL_PLAINTEXT) where this client sends {security.protocol}"
    )


def _split(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    return name or "127.0.0.1", int(port)


async def _speaks_tls(host: str, port: int) -> bool | None:
    """Does the listener complete a TLS handshake (certificate not checked)? None: no answer."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), PROBE_TIMEOUT_S
        )
    except ssl.SSLError as exc:
        # a TLS listener that wants a client certificate ends the handshake with an alert;
        # a plaintext one answers a ClientHello with bytes that are no TLS record
        return "alert" in str(exc).lower()
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def probe(conn: KafkaConnection) -> KafkaAccessError | None:
    """Connect to each bootstrap host as the clients do; the error naming the first failure,
    None when a host accepts the connection and its credentials."""
    security = conn.security
    try:
        auth = auth_config(security)
    except SecurityError as exc:
        return KafkaAccessError(str(exc))
    lines: list[str] = []
    unreachable: list[str] = []
    for host in conn.bootstrap:
        name, port = _split(host)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(name, port), PROBE_TIMEOUT_S)
            writer.close()
        except (OSError, TimeoutError) as exc:
            unreachable.append(
                f"cannot reach the broker at {host} "
                f"({getattr(exc, 'strerror', None) or 'timed out'}): is it running? start it "
                "with `kaizen-stream broker` or `kaizen-stream up`, or fix KAIZEN_BROKER"
            )
            continue
        try:
            kafka_conn = await asyncio.wait_for(
                create_conn(name, port, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000), **auth),
                PROBE_TIMEOUT_S,
            )
        except SaslAuthenticationFailed:
            lines.append(describe_sasl_failure(host, security))
            continue
        except ssl.SSLCertVerificationError as exc:
            lines.append(describe_certificate(host, exc))
            continue
        except (KafkaError, OSError, TimeoutError) as exc:
            line = describe_listener(host, security, await _speaks_tls(name, port))
            lines.append(line or f"cannot use {host}: {type(exc).__name__} {exc}")
            continue
        kafka_conn.close()
        return None
    if lines:
        return KafkaAccessError(lines[0])
    return KafkaTransient(unreachable[0]) if unreachable else None


async def diagnose(exc: BaseException, conn: KafkaConnection) -> KafkaAccessError:
    """The KafkaAccessError naming why `exc` happened (probing the brokers when it is a
    connection error)."""
    if isinstance(exc, KafkaAccessError):
        return exc
    if isinstance(exc, SecurityError):
        return KafkaAccessError(str(exc))
    if isinstance(exc, KafkaError):
        line = describe_authorization(exc, conn.security)
        if line is not None:
            return KafkaAccessError(line)
        if isinstance(exc, SaslAuthenticationFailed):
            return KafkaAccessError(describe_sasl_failure(conn.servers, conn.security))
    if isinstance(exc, KafkaConnectionError | OSError | TimeoutError | KafkaError):
        found = await probe(conn)
        if found is not None:
            return found
    return KafkaTransient(
        f"Kafka at {conn.servers} ({conn.security.describe()}): {type(exc).__name__} {exc}"
    )


async def explain(exc: BaseException, conn: KafkaConnection) -> str:
    """One line naming why `exc` happened."""
    return str(await diagnose(exc, conn))


@contextlib.asynccontextmanager
async def explained(conn: KafkaConnection) -> AsyncIterator[None]:
    """Kafka, TLS and credential failures inside the block become a one-line KafkaAccessError."""
    try:
        yield
    except (KafkaError, ssl.SSLError, SecurityError) as exc:
        raise await diagnose(exc, conn) from None


AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
# how libraries word a refusal they log as text (aiokafka, Faust's repr of its wrapper)
_NAMED_REFUSAL = re.compile(
    r"TopicAuthorizationFailedError(?:: |\()[\[{(]?'?([\w.-]+)|Topic ([\w.-]+) is not authorized"
)


def _topics_in(exc: KafkaError) -> list[str]:
    """The topic names an authorization error carries (aiokafka gives one, or a set)."""
    names: list[str] = []
    for arg in exc.args:
        if isinstance(arg, str):
            names.append(arg)
        elif isinstance(arg, set | frozenset | list | tuple):
            names += [str(a) for a in arg]
    return names


def refusal_of(exc: BaseException | None) -> KafkaError | None:
    """The authorization error `exc` is, or was raised from (Faust wraps aiokafka's)."""
    for _ in range(10):
        if exc is None:
            return None
        if isinstance(exc, AUTHORIZATION_ERRORS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _refusal_in(record: logging.LogRecord) -> KafkaError | None:
    """The authorization error a log record carries: its exception, an argument, or (for
    libraries that format the error into the text) its name."""
    excs: list[object] = [record.exc_info[1]] if record.exc_info else []
    excs += [a for a in (record.args if isinstance(record.args, tuple) else ()) if a]
    for exc in excs:
        found = refusal_of(exc) if isinstance(exc, BaseException) else None
        if found is not None:
            return found
    try:
        text = record.getMessage()
    except (TypeError, ValueError):
        text = str(record.msg)
    match = _NAMED_REFUSAL.search(text)
    if match:
        return TopicAuthorizationFailedError(match.group(1) or match.group(2))
    if "AuthorizationFailedError" in text:
        return ClusterAuthorizationFailedError() if "Cluster" in text else KafkaError()
    return None


class OneLineRefusals(logging.Filter):
    """A log handler filter for a long-running process (the worker): a record about a
    missing ACL becomes the one line naming it, without its traceback, and is written
    once per cause (Faust, aiokafka and the worker's own handlers each report the same
    refusal, some with a traceback, some on every retry)."""

    def __init__(self, security: KafkaSecurity, writes: Iterable[str] = ()) -> None:
        super().__init__()
        self.security = security
        self.writes = frozenset(writes)  # the topics this process writes (and never reads)
        self.said: set[str] = set()

    def describe(self, exc: KafkaError) -> str:
        topics = _topics_in(exc) if isinstance(exc, TopicAuthorizationFailedError) else []
        if len(topics) == 1 and topics[0] in self.writes:
            return describe_missing_write(topics[0], self.security)
        return describe_authorization(exc, self.security) or (
            f"{_who(self.security)} was refused by Kafka (missing ACL): {ACL_HINT}"
        )

    def filter(self, record: logging.LogRecord) -> bool:
        exc = _refusal_in(record)
        if exc is None:
            return True
        line = self.describe(exc)
        if line in self.said:
            return False
        self.said.add(line)
        record.msg, record.args = line, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.ERROR, "ERROR"
        return True


async def check_access(
    conn: KafkaConnection,
    *,
    read: Iterable[str] = (),
    write: Iterable[str] = (),
    group: str | None = None,
) -> None:
    """KafkaAccessError naming the cause unless the brokers take this connection, each
    existing topic in `read` can be read and each in `write` written (the broker's authorized
    operations for them; nothing is read or written; a fetch at its end for a topic whose
    operations the broker does not report) and `group` described.

    One admin client asks all of it at once; a refused topic is named before a refused
    group, as when they were asked one after the other."""
    async with explained(conn):
        reads, writes = list(read), list(write)
        admin = clients.new_admin(conn, role="check")
        try:
            await admin.start()
            checks = []
            if reads or writes:
                checks.append(_check_topics(conn, admin, reads, writes))
            if group is not None:
                checks.append(_check_group(admin, group))
            for outcome in await asyncio.gather(*checks, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        finally:
            await admin.close()


async def _check_topics(
    conn: KafkaConnection, admin: AIOKafkaAdminClient, reads: list[str], writes: list[str]
) -> None:
    found = await operations.topic_operations(admin._client, sorted({*reads, *writes}))
    unknown = []
    for topic in reads:
        allowed = operations.allows(found[topic], operations.READ)
        if allowed is False:
            raise TopicAuthorizationFailedError(topic)
        if allowed is None:
            unknown.append(topic)
    if unknown:
        await _fetch_at_end(conn, unknown)
    for topic in writes:
        if operations.allows(found[topic], operations.WRITE) is False:
            raise KafkaAccessError(describe_missing_write(topic, conn.security))


async def _fetch_at_end(conn: KafkaConnection, topics: list[str]) -> None:
    """Read is checked on fetch: one fetch at the end of each topic (one of its partitions),
    all in one request, where the broker does not report its authorized operations."""
    # a short fetch wait: Apache Kafka answers one request per connection at a time
    consumer = clients.new_consumer(
        conn, role="check", group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    try:
        await consumer.start()
        tps = []
        for topic in topics:
            partitions = await clients.topic_partitions(consumer._client, topic)
            if partitions:  # a missing topic is for the topics check to report
                tps.append(TopicPartition(topic, min(partitions)))
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            await consumer.getmany(*tps, timeout_ms=100)
    finally:
        await consumer.stop()


def describe_missing_write(topic: str, security: KafkaSecurity) -> str:
    """The line for a principal that may not write `topic`, with the ACL that fixes it."""
    principal = security.username if security.sasl and security.username else "PRINCIPAL"
    command = kafka_acls_command(principal, Grant("topic", topic, ("Write",)))
    return (
        f"{_who(security)} is not authorized to write topic {topic} (missing ACL); "
        f"the Kafka operator adds it with: {command}"
    )


async def _check_group(admin: AIOKafkaAdminClient, group: str) -> None:
    """GroupAuthorizationFailedError when the principal may not use `group`. Anything else
    (a coordinator not elected yet on a new cluster, the embedded broker closing the
    connection for an unknown group) is left for the group join to report."""
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(admin.list_consumer_group_offsets(group), PROBE_TIMEOUT_S)
            return
        except GroupAuthorizationFailedError:
            raise
        except GroupCoordinatorNotAvailableError:
            # a new cluster creates __consumer_offsets on the first group lookup
            await asyncio.sleep(0.5)
        except (KafkaError, TimeoutError):
            return
