"""The shipper checks its acks against end offsets on the embedded broker only (issue 13).

On Apache Kafka an acks=all ack is proof that the records are in the topic: the check (a
metadata request and a ListOffsets per round, one consumer per shipper) would be load on
the brokers from every machine of a fleet for nothing. On the embedded broker the check
stays: a restarted tansu acks records for a topic it has not created yet
(tests/shipper/test_broker_down.py). Real parts: a spool, the shipper, the suite's broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.brokers import Broker
from tests.hooks.util import consume_events
from tests.shipper.test_unencodable import good
from workers.hooks.spool import Spool
from workers.shipper.shipper import Shipper


def test_acks_are_checked_on_the_embedded_broker_only(
    tmp_path: Path, broker: Broker, unique: str
) -> None:
    spool = Spool(str(tmp_path / "spool"))
    session = f"acks-{unique}"
    for _ in range(3):
        spool.append(good(session))
    shipper = Shipper(spool, broker.bootstrap, quiet=True)

    async def one_round() -> tuple[int, bool]:
        try:
            sent = await shipper.round()
            return sent, shipper._consumer is not None  # the check's consumer
        finally:
            await shipper._close()

    sent, checked = asyncio.run(one_round())
    assert sent == 3
    assert checked == (broker.kind == "tansu")
    assert shipper.checks_acks == (broker.kind == "tansu")
    got = consume_events(broker.bootstrap, 3, timeout=30, sessions={session})
    assert sorted(e["seq"] for e in got) == [0, 1, 2]
    assert not spool.pending()
