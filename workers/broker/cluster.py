"""What a broker reports about itself (its cluster id, a topic's id), and the embedded
broker's quirks that follow from it.

The embedded broker (tansu) answers every cluster-id question with ``tansu_cluster`` unless
told otherwise, while Apache Kafka's cluster id is a random UUID fixed when its storage was
formatted. Code that works around a quirk of the embedded broker asks here, and does the
right thing for Apache Kafka whenever the answer is unknown.

The cluster id and a topic's id together name a topic's *incarnation* (`incarnation`):
a broker formatted anew has another cluster id, a topic deleted and made again another
topic id, on both brokers (Apache Kafka 4.x and the embedded broker answer Metadata v12
with topic ids; a broker that answers with none leaves ``topic_id`` None).

Invariants: a broker that cannot be reached counts as Apache Kafka (the engine the project
is proven on), never as the embedded broker; `incarnation` raises when the broker cannot be
asked (an unknown incarnation must never pass for the same one).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from workers.kafka import clients, topic_ids
from workers.kafka.config import SecurityError

#: the embedded broker's default cluster id (`tansu broker --cluster-id`)
EMBEDDED_CLUSTER_ID = "tansu_cluster"


async def cluster_id(bootstrap: clients.Target, timeout: float = 10.0) -> str | None:
    """The cluster id the broker reports in its metadata; None when it cannot be asked."""
    try:
        admin = clients.new_admin(bootstrap, request_timeout_ms=int(timeout * 1000))
    except SecurityError:
        return None
    try:
        await asyncio.wait_for(admin.start(), timeout)
        found = await asyncio.wait_for(admin.describe_cluster(), timeout)
    except (KafkaError, OSError, TimeoutError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    value = found.get("cluster_id")
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class Incarnation:
    """What a broker reports that names one life of a topic (None: not reported)."""

    cluster_id: str | None
    topic_id: str | None


async def incarnation(bootstrap: clients.Target, topic: str) -> Incarnation:
    """The cluster id and `topic`'s id the broker reports now (KafkaError when it cannot
    be asked)."""
    admin = clients.new_admin(bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        return await incarnation_of(admin, topic)
    finally:
        await admin.close()


async def incarnation_of(admin: AIOKafkaAdminClient, topic: str) -> Incarnation:
    """`incarnation`, asked through a started admin client (kept by who asks often)."""
    found = await topic_ids.describe(admin, [topic])
    if found is None:  # no Metadata v12: the cluster id alone
        cluster = (await admin.describe_cluster()).get("cluster_id")
        return Incarnation(str(cluster) if cluster else None, None)
    cluster, ids = found
    tid = ids.get(topic)
    return Incarnation(cluster, None if tid is None else str(tid))


def is_embedded(cluster: str | None) -> bool:
    """Is this the embedded broker? (None, unknown: no, see the module's invariant)."""
    return cluster == EMBEDDED_CLUSTER_ID


def static_membership_works(cluster: str | None) -> bool:
    """Does the broker hand a static member that rejoins its old partitions at once?

    Apache Kafka does. The embedded broker (tansu 0.6) accepts a ``group.instance.id`` but
    a member that rejoins under it after a kill waits for a join that may not come in
    seconds (measured: a worker killed and restarted got no assignment within 8 s), so
    there workers join as dynamic members.
    """
    return not is_embedded(cluster)


def acks_prove_landing(cluster: str | None) -> bool:
    """Is a producer's ack proof that the records are in the topic?

    Apache Kafka: yes (acks=all, min.insync.replicas, no unclean election). The embedded
    broker keeps memory only and acks a produce for a topic it has not created yet (after a
    restart); those records vanish once the topic is created, so a shipper checks the end
    offsets after each send there. Unknown (None): no, the check is kept (on Apache Kafka it
    always passes, it only costs two requests per round).
    """
    return cluster is not None and not is_embedded(cluster)
