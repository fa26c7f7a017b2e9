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
        return cls(
            broker=env.get("KAIZEN_BROKER") or DEFAULT_BROKER,
            data_dir=Path(data_dir) if data_dir else default_data_dir(),
            partitions=partitions,
            replay_topic_prefix=env.get("KAIZEN_REPLAY_TOPIC_PREFIX", "").strip(),
            worker_id=env.get("KAIZEN_WORKER_ID", "").strip(),
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

    @property
    def group_instance_id(self) -> str:
        """The worker's ``group.instance.id``: KAIZEN_WORKER_ID, else `default_worker_id`."""
        return self.worker_id or default_worker_id(self.data_dir)


def default_worker_id(data_dir: Path) -> str:
    """``<hostname>-<8 hex digits of the data dir's absolute path>``.

    Stable across restarts of one worker (same machine, same data dir), which is what lets
    the group hand a restarted worker its partitions back without a rebalance; two workers
    on one machine differ because two workers never share a data dir (the hot log's owner
    lock refuses it). A container whose hostname changes on every start needs
    KAIZEN_WORKER_ID set.
    """
    import hashlib  # here: only workers need these, not the hook path
    import socket

    digest = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"
