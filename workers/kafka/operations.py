"""What the broker lets this principal do on a topic: Metadata v8's authorized operations.

Kafka answers a Metadata request (v8 and later) that asks for
`include_topic_authorized_operations` with a bit field per topic: bit N set
when the principal may do ACL operation N (KIP-430). That proves Write on a
topic without writing anything, which no produce can do. aiokafka (0.14)
speaks Metadata up to v5 only, so the v8 request and response are declared
here, on aiokafka's own protocol types.

Invariants: `topic_operations` never creates a topic; an answer it cannot
read (a broker without Metadata v8, such as an old or embedded one, or a topic
whose operations the broker did not compute) is None, "unknown", never a
refusal.
"""

from __future__ import annotations

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Schema, String

# AclOperation codes (org.apache.kafka.common.acl.AclOperation): the bit index in the field
READ = 3
WRITE = 4
OPERATION_NAMES = {READ: "Read", WRITE: "Write"}
# Kafka's "not computed" value of the field (Integer.MIN_VALUE)
UNKNOWN_OPERATIONS = -(2**31)
TOPIC_AUTHORIZATION_FAILED = 29
UNKNOWN_TOPIC_OR_PARTITION = 3


class MetadataResponse_v8(Response):
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(
                ("node_id", Int32),
                ("host", String("utf-8")),
                ("port", Int32),
                ("rack", String("utf-8")),
            ),
        ),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("topic", String("utf-8")),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition", Int32),
                        ("leader", Int32),
                        ("leader_epoch", Int32),
                        ("replicas", Array(Int32)),
                        ("isr", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class MetadataRequest_v8(RequestStruct):
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class TopicOperationsRequest(Request[MetadataRequest_v8]):
    """Metadata v8 for `topics` with their authorized operations (never creates a topic)."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v8]) -> MetadataRequest_v8:
        return request_struct_class(self._topics, False, False, True)


def allows(operations: int | None, operation: int) -> bool | None:
    """Does the bit field allow `operation`? None when the field is unknown."""
    if operations is None:
        return None
    return bool(operations & (1 << operation))


async def topic_operations(client: AIOKafkaClient, topics: list[str]) -> dict[str, int | None]:
    """The authorized-operations field of each topic for this client's principal:
    0 for a topic it may not even describe (TOPIC_AUTHORIZATION_FAILED), None when
    unknown (no Metadata v8 on the broker, a missing topic, not computed)."""
    unknown: dict[str, int | None] = dict.fromkeys(topics)
    try:
        response = await client.send(client.get_random_node(), TopicOperationsRequest(topics))
    except (KafkaError, NotImplementedError):
        return unknown  # NotImplementedError: aiokafka finds no common Metadata version
    found = dict(unknown)
    for error_code, name, _internal, _partitions, operations in response.topics:
        if error_code == TOPIC_AUTHORIZATION_FAILED:
            found[name] = 0
        elif error_code == 0 and operations != UNKNOWN_OPERATIONS:
            found[name] = operations
    return found
