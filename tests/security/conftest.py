"""A secured Apache Kafka node for the security tests: SASL_SSL, mutual TLS, StandardAuthorizer.

One broker for the session with the four principals of docs/OPERATIONS.md
(shipper, worker, replay, operator), each holding exactly the documented ACLs
(workers/kafka/acls.py), and the project's topics created by the operator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.security.secured_kafka import SecuredKafka, unavailable
from workers.broker.topics import ensure_topics

PRINCIPALS = ("shipper", "worker", "replay", "operator")


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    missing = unavailable()
    if missing:
        pytest.skip(missing)
    kafka = SecuredKafka(tmp_path_factory.mktemp("secured-kafka"), list(PRINCIPALS)).start()
    try:
        kafka.grant(*((p, p) for p in PRINCIPALS))
        asyncio.run(ensure_topics(kafka.connection("operator"), kafka.partitions, timeout=60))
        yield kafka
    finally:
        kafka.stop()
