"""The project's topics: what each one must be, creating them, and checking what the broker has.

The one owner of topic definitions. `topic_specs` (pure) says what every topic
must be from the settings: partitions, replication factor, min.insync.replicas,
retention and max.message.bytes, plus the configs below. `create_topics`
creates the missing ones and compares the existing ones (safe to run twice);
`describe_topics` reads what the broker has, never auto-creating a topic;
`problems` (pure) names every difference. Invariant the worker relies on
(`worker_partitions`, `worker_problem`): kaizen.events and kaizen.replay.requests have the same
partition count, and sessions are routed by the count the broker reports,
never by KAIZEN_PARTITIONS alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from workers.broker.embedded import BrokerError
from workers.kafka import clients
from workers.settings import (
    ALL_TOPICS,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    REPLAY_REQUESTS_TOPIC,
    REPLAY_TOPIC,
    SESSIONS_TOPIC,
    Settings,
)

#: topic configs beyond the broker's defaults. Replay requests are stamped by the broker
#: (LogAppendTime): the worker judges a request's age by it, never by the sender's clock.
#: The embedded broker ignores the setting and keeps the producer's time.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    # a worker that takes over a partition with an empty data dir rebuilds from the start
    EVENTS_TOPIC: {"retention.ms": "-1"},
    REPLAY_REQUESTS_TOPIC: {"message.timestamp.type": "LogAppendTime"},
    # the latest summary per session is all anyone reads (workers/analytics/team.py)
    SESSIONS_TOPIC: {"cleanup.policy": "compact"},
}
#: topics that carry shipper batches or replay batches: they need max.message.bytes
BIG_MESSAGE_TOPICS = (EVENTS_TOPIC, DLQ_TOPIC, REPLAY_TOPIC)
#: the topics a worker reads or writes (kaizen.sessions: its session summaries); it refuses
#: to start without them, since Kafka (auto-creation off) would refuse its sends later
WORKER_TOPICS = ALL_TOPICS

_ADMIN_TIMEOUT_MS = 10_000
_READ_BACK_S = 15.0  # how long created topics may take to show in the metadata


class TopicsError(BrokerError):
    """The topics cannot serve the worker; the message is one line saying what to do."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic as it must be (`topic_specs`) or as the broker reports it (`describe_topics`:
    the replication factor of its least-replicated partition, only the configs asked for)."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings, topics: Iterable[str] = ALL_TOPICS) -> list[Topic]:
    """What each topic must be under `settings` (pure)."""
    specs = []
    for name in topics:
        configs = {
            "min.insync.replicas": str(settings.min_insync),
            # an unclean election drops acknowledged events: never
            "unclean.leader.election.enable": "false",
            **TOPIC_CONFIGS.get(name, {}),
        }
        if name in BIG_MESSAGE_TOPICS:
            configs["max.message.bytes"] = str(settings.max_message_bytes)
        if name == REPLAY_TOPIC:
            configs["retention.ms"] = str(settings.replay_retention_ms)
        specs.append(Topic(name, settings.partitions, settings.replication_factor, configs))
    return specs


def problems(spec: Topic, state: Topic | None) -> list[str]:
    """Every way `state` differs from `spec`, one short phrase each (pure)."""
    if state is None:
        return [f"{spec.name} does not exist"]
    found = []
    if state.partitions != spec.partitions:
        found.append(f"{spec.name} has {state.partitions} partitions, want {spec.partitions}")
    if state.replication_factor != spec.replication_factor:
        found.append(
            f"{spec.name} has replication factor {state.replication_factor}, "
            f"want {spec.replication_factor}"
        )
    for key, want in spec.configs.items():
        have = state.configs.get(key)
        if have != want:
            found.append(
                f"{spec.name} {key}={have if have is not None else '(unset)'}, want {want}"
            )
    return found


def describe_line(state: Topic | None, name: str) -> str:
    """`topics check`'s line for one topic (pure)."""
    if state is None:
        return f"{name}: missing"
    configs = " ".join(f"{k}={v}" for k, v in sorted(state.configs.items()))
    return (
        f"{name}: exists, {state.partitions} partitions, "
        f"replication factor {state.replication_factor}, {configs}"
    )


def count_mismatch(states: Mapping[str, Topic | None]) -> str | None:
    """Why kaizen.events and kaizen.replay.requests cannot serve replays together, or None
    (pure): their partition counts differ."""
    events, requests = states.get(EVENTS_TOPIC), states.get(REPLAY_REQUESTS_TOPIC)
    if events is None or requests is None or events.partitions == requests.partitions:
        return None
    return (
        f"{EVENTS_TOPIC} has {events.partitions} partitions but {REPLAY_REQUESTS_TOPIC} has "
        f"{requests.partitions}: a replay request would reach a worker that does not own its "
        f"session; give both the same count"
    )


def worker_problem(states: Mapping[str, Topic | None]) -> str | None:
    """Why a worker must not start on these topics, or None (pure)."""
    missing = [name for name in WORKER_TOPICS if states.get(name) is None]
    if missing:
        return f"topic {', '.join(missing)} missing: create it with `kaizen-stream topics create`"
    mismatch = count_mismatch(states)
    return f"{mismatch} (`kaizen-stream topics check`)" if mismatch else None


def new_admin(
    bootstrap: clients.Target, request_timeout_ms: int = _ADMIN_TIMEOUT_MS
) -> AIOKafkaAdminClient:
    """The admin client of this module (every bootstrap host, the security settings)."""
    return clients.new_admin(bootstrap, request_timeout_ms=request_timeout_ms)


async def describe_topics(
    admin: AIOKafkaAdminClient, names: Sequence[str], config_keys: Iterable[str] = ()
) -> dict[str, Topic | None]:
    """What the broker has for each of `names` (None: missing), with the configs asked for.

    Asks for the metadata of every topic: a request naming a missing topic makes the
    embedded broker (and a Kafka with auto.create.topics.enable) create it."""
    wanted = set(names)
    topics = [t for t in await admin.describe_topics() if t["topic"] in wanted]
    states: dict[str, Topic | None] = dict.fromkeys(names)
    found = {}
    for topic in topics:
        if topic["error_code"] != 0 or not topic["partitions"]:
            continue
        replicas = min(len(p["replicas"]) for p in topic["partitions"])
        found[topic["topic"]] = (len(topic["partitions"]), replicas)
    keys = sorted(set(config_keys))
    configs = await _configs(admin, sorted(found), keys) if keys and found else {}
    for name, (partitions, replicas) in found.items():
        states[name] = Topic(name, partitions, replicas, configs.get(name, {}))
    return states


async def _configs(
    admin: AIOKafkaAdminClient, names: Sequence[str], keys: list[str]
) -> dict[str, dict[str, str]]:
    # every config, filtered here: the embedded broker drops the connection on a
    # DescribeConfigs request that names its keys (tansu 0.6)
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    wanted = set(keys)
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise for_code(resource["error_code"])(resource["error_message"])
            out[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_value"] is not None and entry["config_names"] in wanted
            }
    return out


async def _create(admin: AIOKafkaAdminClient, specs: Sequence[Topic]) -> None:
    """Create `specs`; KafkaError naming the topic when the broker refuses one."""
    response = await admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                topic_configs=dict(s.configs),
            )
            for s in specs
        ]
    )
    for error in response.to_object()["topic_errors"]:
        code = error["error_code"]
        if code not in (0, TopicAlreadyExistsError.errno):
            cls = for_code(code)
            message = error.get("error_message") or cls.__name__
            raise cls(f"{error['topic']}: {message}")


async def create_topics(
    settings: Settings, topics: Sequence[str] = ALL_TOPICS
) -> tuple[list[str], dict[str, list[str]]]:
    """Create the missing topics as `topic_specs` says; (created, problems per existing topic).

    An existing topic is never altered: its differences are returned for the operator."""
    specs = topic_specs(settings, topics)
    keys = {k for s in specs for k in s.configs}
    admin = new_admin(settings.kafka)
    try:
        await admin.start()
        states = await describe_topics(admin, topics, keys)
        missing = [s for s in specs if states[s.name] is None]
        if missing:
            await _create(admin, missing)
            # read back: a broker may keep other values than those asked for
            states.update(await _read_back(admin, [s.name for s in missing], keys))
        found = {s.name: problems(s, states[s.name]) for s in specs}
        return [s.name for s in missing], {name: p for name, p in found.items() if p}
    finally:
        await admin.close()


async def _read_back(
    admin: AIOKafkaAdminClient, names: Sequence[str], keys: Iterable[str]
) -> dict[str, Topic | None]:
    """`describe_topics` of topics just created, once the broker's metadata shows them all.

    Apache Kafka acks CreateTopics when the controller has the topics; the broker that
    answers metadata learns of them a little later (KRaft propagates asynchronously), so
    a read-back at once can find them missing. On a cluster the brokers learn of them one
    by one: one broker's metadata may show them while the one asked for their configs
    still answers "unknown topic" (seen on three nodes), which counts as not shown yet."""
    deadline = time.monotonic() + _READ_BACK_S
    while True:
        try:
            states = await describe_topics(admin, names, keys)
        except UnknownTopicOrPartitionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if all(states.values()) or time.monotonic() >= deadline:
                return states
        await asyncio.sleep(0.1)


async def check_topics(
    settings: Settings, topics: Sequence[str] = ALL_TOPICS
) -> tuple[dict[str, Topic | None], list[str]]:
    """What the broker has for `topics`, and every problem against `topic_specs`."""
    specs = topic_specs(settings, topics)
    admin = new_admin(settings.kafka)
    try:
        await admin.start()
        states = await describe_topics(admin, topics, {k for s in specs for k in s.configs})
    finally:
        await admin.close()
    mismatch = count_mismatch(states)
    found = [mismatch] if mismatch else []
    found += [p for s in specs for p in problems(s, states[s.name])]
    return states, found


async def worker_partitions(bootstrap: clients.Target) -> int:
    """The partition count of kaizen.events on the broker, after checking the worker's
    topics exist and kaizen.replay.requests has the same count; TopicsError when not."""
    admin = new_admin(bootstrap)
    try:
        await admin.start()
        states = await describe_topics(admin, WORKER_TOPICS)
    finally:
        await admin.close()
    problem = worker_problem(states)
    if problem:
        raise TopicsError(problem)
    events = states[EVENTS_TOPIC]
    assert events is not None
    return events.partitions


def route_by_broker(settings: Settings, say: Callable[[str], None]) -> Settings:
    """`settings` with the partition count kaizen.events has on the broker, for routing
    sessions (`partition_for`); TopicsError when a topic the worker uses is missing or
    kaizen.replay.requests has another count. Waits for the broker, calling `say` once per
    attempt (a worker may start before Kafka does), and once when the count is not
    KAIZEN_PARTITIONS."""
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # `say` reports it, in one line per attempt
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                partitions = asyncio.run(worker_partitions(settings.kafka))
                break
            except KafkaError as exc:
                say(f"{settings.broker} does not answer ({exc}); attempt {attempt}, retrying")
                time.sleep(min(2.0 * attempt, 10.0))
    finally:
        aiokafka_log.setLevel(level)
    return routed_by(settings, partitions, say)


def routed_by(settings: Settings, partitions: int, say: Callable[[str], None]) -> Settings:
    """`settings` routing sessions by `partitions`, the count kaizen.events has on the broker
    (`worker_partitions`); `say` is called once when it is not KAIZEN_PARTITIONS."""
    if partitions != settings.partitions:
        say(
            f"{EVENTS_TOPIC} has {partitions} partitions on the broker "
            f"(KAIZEN_PARTITIONS={settings.partitions}): sessions are routed by {partitions}"
        )
    return settings.override(partitions=partitions)


async def ensure_topics(
    bootstrap: clients.Target,
    partitions: int,
    topics: Iterable[str] = ALL_TOPICS,
    timeout: float = 30.0,
) -> None:
    """Create every missing topic as `topic_specs` says, with `partitions` partitions and
    the default settings otherwise (tests, `kaizen-stream broker`); existing ones are kept."""
    specs = topic_specs(Settings(partitions=partitions), topics)
    deadline = time.monotonic() + timeout
    while True:
        admin = new_admin(bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [s for s in specs if s.name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await _create(admin, missing)
                await _read_back(admin, [s.name for s in missing], ())
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
