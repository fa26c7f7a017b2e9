"""The least-privilege ACLs of the project's principals, as data, and as kafka-acls commands.

docs/OPERATIONS.md ("Security") lists exactly the commands `kafka_acls_commands`
renders, and the tests grant exactly these on a broker with the
StandardAuthorizer on (tests/security); one list, so docs and tests agree.

Kafka implies Describe by Read and Write, and an idempotent producer needs
only Write on a topic (KIP-679), so no cluster-wide grant is needed for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.settings import (
    DLQ_TOPIC,
    EVENTS_TOPIC,
    REPLAY_REQUESTS_TOPIC,
    REPLAY_TOPIC,
    SESSIONS_TOPIC,
)

KAFKA_ACLS = "kafka-acls.sh --bootstrap-server $BROKER --command-config admin.properties"
WORKER_GROUP = "kaizen-stream"  # the workers' consumer group: the Faust app id (workers/app.py)
TOPIC_PREFIX = "kaizen."


@dataclass(frozen=True, slots=True)
class Grant:
    resource: str  # topic | group | cluster
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


ROLES: dict[str, tuple[Grant, ...]] = {
    # hooks' shipper on each laptop: write events; nothing else (not even read them back)
    "shipper": (Grant("topic", EVENTS_TOPIC, ("Write",)),),
    # the workers: read events and replay requests in their group, write dead letters
    # and replay answers; Write on the requests too, for `POST /sessions/{id}/replay`,
    # which forwards the request to whichever worker owns the session
    "worker": (
        Grant("topic", EVENTS_TOPIC, ("Read",)),
        Grant("topic", REPLAY_REQUESTS_TOPIC, ("Read", "Write")),
        Grant("topic", DLQ_TOPIC, ("Write",)),
        Grant("topic", REPLAY_TOPIC, ("Write",)),
        Grant("topic", SESSIONS_TOPIC, ("Write",)),
        Grant("group", WORKER_GROUP, ("Read",)),
    ),
    # `kaizen-stream replay` and other replay clients: ask, and read the answers
    "replay": (
        Grant("topic", REPLAY_REQUESTS_TOPIC, ("Write",)),
        Grant("topic", REPLAY_TOPIC, ("Read",)),
        Grant("topic", SESSIONS_TOPIC, ("Read",)),
    ),
    # whoever provisions topics and watches the stream (`topics create|check`, `tail`)
    "operator": (
        Grant(
            "topic", TOPIC_PREFIX, ("Create", "Describe", "DescribeConfigs", "AlterConfigs"), True
        ),
        Grant("topic", EVENTS_TOPIC, ("Read",)),
        Grant("topic", SESSIONS_TOPIC, ("Read",)),
        Grant("group", WORKER_GROUP, ("Describe",)),
    ),
}


def acl_arguments(principal: str, grant: Grant, action: str = "--add") -> list[str]:
    """kafka-acls arguments (after the connection flags) that add one grant (or, with
    action "--remove", remove it)."""
    args = [action, "--allow-principal", f"User:{principal}"]
    for op in grant.operations:
        args += ["--operation", op]
    if grant.resource == "cluster":
        args.append("--cluster")
    else:
        args += [f"--{grant.resource}", grant.name]
    if grant.prefixed:
        args += ["--resource-pattern-type", "prefixed"]
    return args


def kafka_acls_command(principal: str, grant: Grant) -> str:
    """The shell command an operator runs to add one grant (as in the docs)."""
    return " ".join([KAFKA_ACLS, *acl_arguments(principal, grant)])


def kafka_acls_commands(role: str, principal: str) -> list[str]:
    """The shell commands an operator runs to grant `role` to `principal` (as in the docs)."""
    return [kafka_acls_command(principal, grant) for grant in ROLES[role]]


def topics_of(role: str, operation: str) -> tuple[str, ...]:
    """The topics (not prefixes) on which `role` is granted `operation`."""
    return tuple(
        grant.name
        for grant in ROLES[role]
        if grant.resource == "topic" and not grant.prefixed and operation in grant.operations
    )
