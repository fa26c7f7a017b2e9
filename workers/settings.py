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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        raw_partitions = env.get("KAIZEN_PARTITIONS", str(DEFAULT_PARTITIONS))
        try:
            partitions = int(raw_partitions)
        except ValueError:
            raise SettingsError(
                f"KAIZEN_PARTITIONS must be a whole number, not {raw_partitions!r}"
            ) from None
        if partitions < 1:
            raise SettingsError(f"KAIZEN_PARTITIONS must be at least 1, not {partitions}")
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


def _compression(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in COMPRESSIONS:
        raise SettingsError(
            f"KAIZEN_COMPRESSION must be one of {', '.join(COMPRESSIONS)}, not {value!r}"
        )
    return lowered
