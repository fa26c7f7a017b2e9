"""The team-wide view: every worker's session summaries, read from ``kaizen.sessions``.

Each worker publishes the summaries of the sessions it owns to the compacted
topic (key = session id, value = the SessionSummary JSON; workers/ingest/folding.py),
so any client sees every session, not one worker's share. Reading keeps the
last value per key (what compaction keeps); a later value is a later fold of
the same session, so it wins.

Reading to the end: the end offsets are taken first; the read stops once every
partition is past them and a poll came back empty. The extra empty poll is for
the embedded broker (tansu), whose end offsets are the start of the last batch
+ 1 and may lie short; on Kafka they are exact and the poll costs 0.3 s.
"""

from __future__ import annotations

import asyncio

from workers.analytics.aggregate import SessionSummary
from workers.kafka import clients
from workers.settings import SESSIONS_TOPIC


async def read_team(
    bootstrap: clients.Target, topic: str = SESSIONS_TOPIC, timeout: float = 30.0
) -> dict[str, SessionSummary]:
    """session id -> latest summary, over every partition of the topic."""
    from aiokafka import TopicPartition

    consumer = clients.new_consumer(
        bootstrap,
        role="team",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(timeout * 1000),
    )
    await consumer.start()
    out: dict[str, SessionSummary] = {}
    try:
        parts = await asyncio.wait_for(consumer._client.fetch_all_metadata(), timeout)
        tps = [TopicPartition(topic, p) for p in sorted(parts.partitions_for_topic(topic) or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got = await consumer.getmany(timeout_ms=300, max_records=50_000)
            for records in got.values():
                for record in records:
                    if record.key is None or record.value is None:
                        continue  # a tombstone or a stray record: nothing to show
                    try:
                        s = SessionSummary.from_bytes(record.value)
                    except (ValueError, TypeError):
                        continue
                    out[s.session_id] = s
            if not any(got.values()):
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
    finally:
        await consumer.stop()
    return out
