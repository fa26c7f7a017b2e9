"""The ingest agent: Faust agent over ``kaizen.events``, raw bytes in, durable frames out.

Decoding happens here, never in a Faust codec (faust crash-loops on a message
its codec cannot read): the topic is raw bytes, and `PartitionState.process`
splits and checks each message. Acks are manual (``stream.noack()``): an
event is acked only after its partition's group commit (fsync + index batch),
so Faust never commits an offset whose events are not durable. Dead letters
are produced before the commit that covers their offset, and awaited by it.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from workers.ingest import testpoint
from workers.ingest.assignment import PartitionManager
from workers.ingest.dlq import DeadLetter
from workers.settings import DLQ_TOPIC

log = logging.getLogger(__name__)

AGENT_NAME = "kaizen-ingest"


def register_ingest(app: faust.App, manager: PartitionManager, dlq_topic: str = DLQ_TOPIC) -> Any:
    """Define the ingest agent on `app` (source: ``manager.topic``); returns the agent."""
    source = app.topic(
        manager.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    dlq = app.topic(
        dlq_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def send_dead_letter(letter: DeadLetter) -> Any:
        return await dlq.send(key=letter.key, value=letter.value, headers=letter.headers)

    @app.agent(source, name=AGENT_NAME)
    async def ingest(stream: Any) -> None:
        async for event in stream.noack().events():
            message = event.message
            state = manager.get(message.partition)
            if state is None:
                continue  # revoked meanwhile: not ours to process (and never acked)
            if not state.ready.is_set():
                await state.ready.wait()  # handoff: catch up before new messages
            try:
                async with state.lock:
                    if state.closed:
                        continue
                    letters = state.process(message.offset, message.value, message.key)
                    sent = [await send_dead_letter(letter) for letter in letters]
                    for delivery in sent:
                        state.add_dlq(delivery)
                    if testpoint.ARMED:
                        testpoint.after_message(message.partition, sent)
                    state.add_ack(event)
                    if state.want_flush():
                        await state.flush(wait=False)
            except Exception as exc:
                # Bad input never raises (it is dead-lettered); this is I/O trouble or a bug.
                # Restarting the agent alone would skip this message and stall the commits
                # behind it, so stop the worker: a restart resumes from the committed offset.
                log.exception("ingest of %s offset %d failed", message.tp, message.offset)
                await app.crash(exc)
                raise

    return ingest
