"""The ingest agent: Faust agent over ``kaizen.events``, raw bytes in, durable frames out.

Decoding happens here, never in a Faust codec (faust crash-loops on a message
its codec cannot read): the topic is raw bytes, and `PartitionState.process`
splits and checks each message. Acks are manual (``stream.noack()``): an
event is acked only after its partition's group commit (fsync + index batch),
so Faust never commits an offset whose events are not durable. Dead letters
are produced before the commit that covers their offset, and awaited by it.
A message at an offset below the one its partition expects next (the consumer's
position moved back) is processed only after the catch-up has checked whether the
broker's offsets went back (`CatchUp.verify`), so a new event is never skipped as old;
in a new epoch, a message the consumer fetched from the old incarnation is never
numbered in the new one (`CatchUp.sift`).
A message of a partition that is still catching up is held
(`PartitionManager.hold`, up to `IngestConfig.held_max_bytes`) and processed, in
order, when its catch-up is done: one loop feeds every partition, so waiting
here would stall them all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from workers.ingest import testpoint
from workers.ingest.assignment import PartitionManager
from workers.ingest.dlq import DeadLetter
from workers.ingest.partition import PartitionState
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

    async def process(state: PartitionState, event: Any) -> None:
        """One message into its partition's pending group commit (the state is ready)."""
        message = event.message
        try:
            behind = state.next_offset is not None and message.offset < state.next_offset
            if behind or state.suspect:
                verdict = await manager.catchup.verify(state, message.offset, message.value)
                if verdict == "stale":  # fetched from an old incarnation: never numbered
                    event.ack()  # in order: verify committed everything before it
                if verdict != "process":
                    return
            async with state.lock:
                if state.closed:
                    return
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
            if manager.stops_for(exc):
                # a missing ACL: the worker stops cleanly; process nothing more meanwhile
                await asyncio.Event().wait()
            log.exception("ingest of %s offset %d failed", message.tp, message.offset)
            await app.crash(exc)
            raise

    manager.process_held = process

    @app.agent(source, name=AGENT_NAME)
    async def ingest(stream: Any) -> None:
        async for event in stream.noack().events():
            state = manager.get(event.message.partition)
            if state is None:
                continue  # revoked meanwhile: not ours to process (and never acked)
            if not state.ready.is_set():
                # catching up: hold it for the catch-up to process when done, and keep
                # serving the other partitions (one loop feeds them all); only past the
                # bound of what may be held, wait
                if manager.hold(state, event):
                    continue
                await state.ready.wait()
            await process(state, event)

    return ingest
