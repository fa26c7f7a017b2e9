"""Settings from the environment, and the external names (topics) that never change.

Stdlib only: the hook path imports this. Command-line flags override the
environment; the environment overrides the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from workers.errors import KaizenError

EVENTS_TOPIC = "kaizen.events"
DLQ_TOPIC = "kaizen.events.dlq"
REPLAY_REQUESTS_TOPIC = "kaizen.replay.requests"
REPLAY_TOPIC = "kaizen.replay"
SESSIONS_TOPIC = "kaizen.sessions"  # compacted, key = session id: every worker's summaries
ALL_TOPICS = (EVENTS_TOPIC, DLQ_TOPIC, REPLAY_REQUESTS_TOPIC, REPLAY_TOPIC, SESSIONS_TOPIC)

DEFAULT_BROKER = "127.0.0.1:9092"
DEFAULT_PARTITIONS = 8
DEFAULT_REPLICATION_FACTOR = 1
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20  # a shipper batch or a replay batch fits (bytes)
DEFAULT_REPLAY_RETENTION_MS = 24 * 3600 * 1000  # replies are read within seconds


class SettingsError(KaizenError, ValueError):
    """A setting has a value that cannot be used; the message says which and why."""


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
        return cls(
            broker=env.get("KAIZEN_BROKER") or DEFAULT_BROKER,
            data_dir=Path(data_dir) if data_dir else default_data_dir(),
            partitions=partitions,
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
        """A copy with the given fields replaced; None values (flags not given) are ignored."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(str(given["data_dir"]))
        return replace(self, **given)  # type: ignore[arg-type]

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
