"""What the broker lets this principal do on a topic: Metadata's authorized operations.

Kafka answers a Metadata request (v8 and later) that asks for
`include_topic_authorized_operations` with a bit field per topic: bit N set
when the principal may do ACL operation N (KIP-430). That proves Write on a
topic without writing anything, which no produce can do. aiokafka speaks
Metadata up to v5 only; the request is `workers/kafka/topic_ids.py`'s v12.

Invariants: `topic_operations` never creates a topic; an answer it cannot
read (a broker without Metadata v12, such as an old or the embedded one, a
missing topic, a field the broker did not compute) is None, "unknown", never
a refusal.
"""

from __future__ import annotations

from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from workers.kafka.topic_ids import TopicMetadataRequest

# AclOperation codes (org.apache.kafka.common.acl.AclOperation): the bit index in the field
READ = 3
WRITE = 4
# Kafka's "not computed" value of the field (Integer.MIN_VALUE)
UNKNOWN_OPERATIONS = -(2**31)
TOPIC_AUTHORIZATION_FAILED = 29


def allows(operations: int | None, operation: int) -> bool | None:
    """Does the bit field allow `operation`? None when the field is unknown."""
    if operations is None:
        return None
    return bool(operations & (1 << operation))


async def topic_operations(client: AIOKafkaClient, topics: list[str]) -> dict[str, int | None]:
    """The authorized-operations field of each topic for this client's principal:
    0 for a topic it may not even describe (TOPIC_AUTHORIZATION_FAILED), None when
    unknown (no Metadata v12 on the broker, a missing topic, not computed)."""
    found: dict[str, int | None] = dict.fromkeys(topics)
    request = TopicMetadataRequest(topics, authorized_operations=True)
    try:
        response: Any = await client.send(client.get_random_node(), request)
    except (KafkaError, NotImplementedError):
        return found  # NotImplementedError: Request.prepare, the broker offers no v12
    for error_code, name, _id, _internal, _partitions, operations, _tags in response.topics:
        if error_code == TOPIC_AUTHORIZATION_FAILED:
            found[name] = 0
        elif error_code == 0 and operations != UNKNOWN_OPERATIONS:
            found[name] = operations
    return found
