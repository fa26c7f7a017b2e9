"""Test points: exact places where a worker stops itself (SIGSTOP) or dawdles, for a test.

``KAIZEN_TEST_STOP=<point>`` in a worker's environment arms one point; unset (always, outside
the tests) every point costs one comparison. At an armed stop point the worker sends itself
SIGSTOP: the test sees it stopped (state ``T`` in ``/proc/<pid>/stat``), checks that the
window it wants really is open (what the broker, the group and the hot log hold), then kills
it with SIGKILL. A crash at a known place, not a random one. An armed slow point sleeps,
widening a window that is short but real (a wait on I/O or on a cancelled task).

Points:

* ``dead-letter-pending``: the live feed has appended a message of a partition while a
  dead letter of an earlier message of that partition is handed to the producer but not yet
  delivered, so before the group commit that would cover both
  (``tests/ingest/test_dead_letter_crash.py``).
* ``close-slowly`` (slow): closing a partition assigned elsewhere takes ``SLOW_S`` seconds,
  as when it waits for its cancelled catch-up or a group commit in flight
  (``tests/ingest/test_rebalance.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Any

ENV = "KAIZEN_TEST_STOP"
DEAD_LETTER_PENDING = "dead-letter-pending"
CLOSE_SLOWLY = "close-slowly"
SLOW_S = 2.0

ARMED = os.environ.get(ENV, "")

#: partition -> dead-letter deliveries handed to the producer (only while a point is armed)
_undelivered: dict[int, list[Any]] = {}


def stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


async def slow(point: str) -> None:
    if point == ARMED:
        await asyncio.sleep(SLOW_S)


def after_message(partition: int, deliveries: Sequence[Any]) -> None:
    """The feed processed a message of `partition` and handed its dead letters over."""
    if ARMED != DEAD_LETTER_PENDING:
        return
    pending = [d for d in _undelivered.get(partition, ()) if not d.done()]
    if pending and not deliveries:
        stop()
    _undelivered[partition] = pending + list(deliveries)
