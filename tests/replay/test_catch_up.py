"""A request for a partition that is still catching up waits for it, then is answered in full."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

from tests.brokers import Broker
from tests.procs import stop
from tests.replay.conftest import as_messages, make_events, produce, replay_until, start_worker
from workers.codec.event import encode_event
from workers.replay.client import ReplayClient


def test_a_partition_catching_up_is_waited_for_then_answered_in_full(
    fresh_broker: Broker, tmp_path: Path
) -> None:
    """Worker 1 ingests and stops; requests wait on the topic; worker 2, with an empty data
    dir in the same group, must catch its partitions up from kaizen.events to the group's
    committed offsets before it answers them, and then answers every event."""
    sessions = {f"cu-{i}": make_events(f"cu-{i}", 400 + 50 * i) for i in range(6)}
    bootstrap = fresh_broker.bootstrap
    group = f"catch-up-{uuid.uuid4().hex[:6]}"
    log1, log2 = tmp_path / "worker1.log", tmp_path / "worker2.log"  # one each: see the end
    landed: dict[bytes, int] = {}

    async def main() -> None:
        messages = [m for evs in sessions.values() for m in as_messages(evs, 20)]
        landed.update(await produce(bootstrap, messages))
        first = start_worker(fresh_broker, tmp_path / "data1", group, log1)
        try:
            async with ReplayClient(bootstrap, timeout=60) as client:
                for sid, evs in sessions.items():
                    await replay_until(client, sid, len(evs), timeout=90)
            await asyncio.sleep(2)  # past the commit interval
        finally:
            stop(first)
        async with ReplayClient(bootstrap, timeout=90) as client:
            tasks = {
                sid: asyncio.ensure_future(_collect(client.replay(client.request(sid))))
                for sid in sessions
            }
            await asyncio.sleep(1.0)  # every request is on the topic before worker 2 exists
            second = start_worker(fresh_broker, tmp_path / "data2", group, log2)
            try:
                for sid, task in tasks.items():
                    assert await task == [encode_event(x) for x in sessions[sid]], sid
            finally:
                stop(second)

    asyncio.run(main())
    # Worker 2 (empty data dir) read every partition holding these sessions from
    # kaizen.events itself: its own log says so, with a message count for each.
    caught = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"partition (\d+): caught up (\d+) messages", log2.read_text())
    }
    for partition in set(landed.values()):
        assert caught.get(partition, 0) > 0, (partition, caught)


async def _collect(replies: object) -> list[bytes]:
    from workers.replay.client import Replayed, ReplayResult

    out: list[bytes] = []
    async for item in replies:  # type: ignore[attr-defined]
        if isinstance(item, Replayed):
            out.append(item.value)
        elif isinstance(item, ReplayResult):
            assert item.end.status == "ok" and item.complete
    return out
