"""Topic ids: the Metadata request at version 12, which aiokafka (up to v5) does not speak.

A topic's id is a random UUID the controller gives it at creation: a topic deleted and
recreated under the same name gets another one, which is how a worker tells a new topic
from the old one (`workers.broker.cluster.incarnation`). Apache Kafka reports it in
Metadata v10 and later; aiokafka's own Metadata classes stop at v5, so this module
declares v12 with aiokafka's protocol types and sends it through an admin client's
connection.

Invariants: the request names its topics (never "all topics", never auto-creation); a
broker that does not offer Metadata v12 gets no request at all (`Request.prepare` refuses
it before anything is sent) and the answer is "no topic id", as is the all-zero UUID a
broker sends when it keeps no topic ids.
"""

from __future__ import annotations

import uuid
from io import BytesIO
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

#: the UUID Kafka uses for "none" (Uuid.ZERO_UUID)
ZERO = uuid.UUID(int=0)


class Uuid(AbstractType[uuid.UUID]):
    """Kafka's UUID field: 16 bytes, most significant first."""

    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return uuid.UUID(bytes=raw)


class MetadataResponse_v12(Response):
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicMetadataRequest(Request[MetadataRequest_v12]):
    """Metadata of the named topics, with their ids (v12 or nothing), and with what the
    principal may do on each when `authorized_operations` (workers/kafka/operations.py)."""

    API_KEY = 3

    def __init__(self, topics: list[str], *, authorized_operations: bool = False) -> None:
        self._topics = topics
        self._operations = authorized_operations

    def build(self, request_struct_class: type[MetadataRequest_v12]) -> MetadataRequest_v12:
        names: list[tuple[uuid.UUID, str, dict[int, bytes]]] = [
            (ZERO, name, {}) for name in self._topics
        ]
        return request_struct_class(names, False, self._operations, {})


async def describe(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> tuple[str | None, dict[str, uuid.UUID]] | None:
    """(the cluster id, the id of each named topic the broker knows and gives an id for),
    from a started admin client; None when the broker offers no Metadata v12."""
    request = TopicMetadataRequest(topics)
    try:
        response: Any = await admin._send_request(request)  # aiokafka's one way to send it
    except NotImplementedError:  # Request.prepare: the broker offers no v12
        return None
    found: dict[str, uuid.UUID] = {}
    for error_code, name, topic_id, *_ in response.topics:
        if error_code == 0 and name is not None and topic_id != ZERO:
            found[name] = topic_id
    return response.cluster_id, found
