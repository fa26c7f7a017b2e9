"""Settings from the environment, and the external names (topics) that never change.

Stdlib only: the hook path imports this. Command-line flags override the
environment; the environment overrides the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from workers.errors import KaizenError
from workers.kafka.config import KafkaConnection, KafkaSecurity, SecurityError, bootstrap_hosts

EVENTS_TOPIC = "kaizen.events"
DLQ_TOPIC = "kaizen.events.dlq"
REPLAY_REQUESTS_TOPIC = "kaizen.replay.requests"
REPLAY_TOPIC = "kaizen.replay"
SESSIONS_TOPIC = "kaizen.sessions"  # compacted, key = session id: every worker's summaries
ALL_TOPICS = (EVENTS_TOPIC, DLQ_TOPIC, REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC, SESSIONS_TOPIC)

DEFAULT_BROKER = "127.0.0.1:9092"
DEFAULT_PARTITIONS = 8
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
DEFAULT_COMPRESSION = "zstd"
DEFAULT_REPLICATION_FACTOR = 1
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20  # a shipper batch or a replay batch fits (bytes)
DEFAULT_REPLAY_RETENTION_MS = 24 * 3600 * 1000  # replies are read within seconds


class SettingsError(KaizenError, ValueError):
    """A setting has a value that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The worker's HTTP server: bearer token, optional TLS, whether /metrics wants the token."""

    token: str | None = field(default=None, repr=False)  # KAIZEN_API_TOKEN
    certfile: str | None = None  # KAIZEN_WEB_CERTFILE
    keyfile: str | None = None  # KAIZEN_WEB_KEYFILE
    metrics_token: bool = False  # KAIZEN_METRICS_REQUIRE_TOKEN

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebSettings:
        certfile = env.get("KAIZEN_WEB_CERTFILE") or None
        keyfile = env.get("KAIZEN_WEB_KEYFILE") or None
        if bool(certfile) != bool(keyfile):
            raise SettingsError("KAIZEN_WEB_CERTFILE and KAIZEN_WEB_KEYFILE go together: set both")
        for name, path in (("KAIZEN_WEB_CERTFILE", certfile), ("KAIZEN_WEB_KEYFILE", keyfile)):
            if path and not os.path.isfile(path):
                raise SettingsError(f"{name} {path} does not exist")
        raw = env.get("KAIZEN_METRICS_REQUIRE_TOKEN", "").strip().lower()
        if raw not in ("", "0", "1", "true", "false", "yes", "no"):
            raise SettingsError(f"KAIZEN_METRICS_REQUIRE_TOKEN must be true or false, not {raw!r}")
        metrics_token = raw in ("1", "true", "yes")
        token = env.get("KAIZEN_API_TOKEN") or None
        if metrics_token and not token:
            raise SettingsError("KAIZEN_METRICS_REQUIRE_TOKEN needs KAIZEN_API_TOKEN")
        return cls(token=token, certfile=certfile, keyfile=keyfile, metrics_token=metrics_token)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "kaizen-stream"


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = DEFAULT_BROKER
    data_dir: Path = Path()
    partitions: int = DEFAULT_PARTITIONS
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    compression: str = DEFAULT_COMPRESSION
    web: WebSettings = field(default_factory=WebSettings)
    #: replies may also go to topics starting with this (empty: kaizen.replay only)
    replay_topic_prefix: str = ""
    #: the worker's static group membership id (KAIZEN_WORKER_ID; empty: `default_worker_id`)
    worker_id: str = ""
    #: how `topics create` provisions the topics (workers.broker.topics owns them)
    replication_factor: int = DEFAULT_REPLICATION_FACTOR
    min_insync_replicas: int | None = None  # None: default_min_insync(replication_factor)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    replay_retention_ms: int = DEFAULT_REPLAY_RETENTION_MS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        partitions = _whole(env, "KAIZEN_PARTITIONS", DEFAULT_PARTITIONS)
        min_isr = env.get("KAIZEN_MIN_INSYNC_REPLICAS", "").strip()
        data_dir = env.get("KAIZEN_DATA_DIR")
        try:
            security = KafkaSecurity.from_env(env)
        except SecurityError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            broker=env.get("KAIZEN_BROKER") or DEFAULT_BROKER,
            data_dir=Path(data_dir) if data_dir else default_data_dir(),
            partitions=partitions,
            security=security,
            compression=_compression(env.get("KAIZEN_COMPRESSION") or DEFAULT_COMPRESSION),
            web=WebSettings.from_env(env),
            replay_topic_prefix=env.get("KAIZEN_REPLAY_TOPIC_PREFIX", "").strip(),
            worker_id=env.get("KAIZEN_WORKER_ID", "").strip(),
            replication_factor=_whole(env, "KAIZEN_REPLICATION_FACTOR", DEFAULT_REPLICATION_FACTOR),
            min_insync_replicas=_whole(env, "KAIZEN_MIN_INSYNC_REPLICAS", 1) if min_isr else None,
            max_message_bytes=_whole(env, "KAIZEN_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES),
            replay_retention_ms=_whole(
                env, "KAIZEN_REPLAY_RETENTION_MS", DEFAULT_REPLAY_RETENTION_MS
            ),
        )

    def override(self, **changes: object) -> Settings:
        """A copy with the given fields replaced; None values (flags not given) are ignored.

        Security fields (protocol, mechanism, username, cafile, certfile, keyfile,
        check_hostname, password_file) go into `security`."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(str(given["data_dir"]))
        if "compression" in given:
            given["compression"] = _compression(str(given["compression"]))
        security_changes = {
            k: given.pop(k) for k in list(given) if k in KafkaSecurity.__dataclass_fields__
        }
        if security_changes:
            try:
                given["security"] = self.security.override(**security_changes)
            except SecurityError as exc:
                raise SettingsError(str(exc)) from None
        return replace(self, **given)  # type: ignore[arg-type]

    @property
    def bootstrap_servers(self) -> tuple[str, ...]:
        """Every bootstrap server of KAIZEN_BROKER, in order."""
        hosts = bootstrap_hosts(self.broker)
        if not hosts:
            raise SettingsError(f"KAIZEN_BROKER must look like host:port, not {self.broker!r}")
        return hosts

    @property
    def broker_host_port(self) -> tuple[str, int]:
        """The first bootstrap server as (host, port)."""
        first = self.broker.split(",")[0].strip()
        if "://" in first:
            first = first.split("://", 1)[1]
        host, sep, port = first.rpartition(":")
        if not sep or not port.isdigit():
            raise SettingsError(f"KAIZEN_BROKER must look like host:port, not {self.broker!r}")
        return host or "127.0.0.1", int(port)

    @property
    def kafka(self) -> KafkaConnection:
        """How every Kafka client connects: all bootstrap hosts, TLS/SASL, compression."""
        return KafkaConnection(self.bootstrap_servers, self.security, self.compression)

    def check_brokers(self) -> None:
        """SettingsError unless every bootstrap server looks like host:port."""
        for host in self.bootstrap_servers:
            _, sep, port = host.rpartition(":")
            if not sep or not port.isdigit():
                raise SettingsError(
                    f"KAIZEN_BROKER must look like host:port[,host:port...], not {self.broker!r}"
                )

    @property
    def hotlog_dir(self) -> Path:
        return self.data_dir / "hotlog"

    def group_instance_id(self, web_port: int) -> str:
        """The worker's ``group.instance.id``: KAIZEN_WORKER_ID, else `default_worker_id`."""
        return self.worker_id or default_worker_id(self.data_dir, web_port)

    @property
    def min_insync(self) -> int:
        """min.insync.replicas of every topic: the setting, else 2 from replication factor 3
        up (an acked event survives one broker's loss), else 1; SettingsError above the RF."""
        if self.min_insync_replicas is None:
            return default_min_insync(self.replication_factor)
        if self.min_insync_replicas > self.replication_factor:
            raise SettingsError(
                f"KAIZEN_MIN_INSYNC_REPLICAS ({self.min_insync_replicas}) cannot exceed "
                f"KAIZEN_REPLICATION_FACTOR ({self.replication_factor}): every produce would fail"
            )
        return self.min_insync_replicas


def default_worker_id(data_dir: Path, web_port: int) -> str:
    """``<hostname>-<8 hex digits of a hash of the data dir's absolute path and web port>``.

    Stable across restarts of one worker (same machine, data dir and web port), which is
    what lets the group hand a restarted worker its partitions back without a rebalance;
    two workers on one machine differ because two workers never share a data dir (the hot
    log's owner lock refuses it). The web port is in it because Faust's assignor refuses an
    assignment made for another web URL (its coordinator stops on an AssertionError): a
    worker restarted on another port must join as a new member. A container whose hostname
    changes on every start needs KAIZEN_WORKER_ID set.
    """
    import hashlib  # here: only workers need these, not the hook path
    import socket

    key = f"{data_dir.absolute()}\0{web_port}".encode()
    digest = hashlib.sha256(key).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def default_min_insync(replication_factor: int) -> int:
    return 2 if replication_factor >= 3 else 1


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive whole number from `env[name]` (`default` when unset or empty)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, not {value}")
    return value


def _compression(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in COMPRESSIONS:
        raise SettingsError(
            f"KAIZEN_COMPRESSION must be one of {', '.join(COMPRESSIONS)}, not {value!r}"
        )
    return lowered
