"""Paced replay (pacing=original): how long to wait before the next event. Pure.

The wait is the gap between the two events' `ts_ms` divided by the request's
speed, capped at MAX_GAP_S: a session left overnight and resumed in the
morning replays its two halves MAX_GAP_S apart, instead of holding a replay
slot (and the requester) all night. Events whose clock went backwards (a
later seq with an earlier ts_ms, e.g. from another machine) are sent at once.
"""

from __future__ import annotations

MAX_GAP_S = 5.0  # seconds: the longest wait between two paced events (docs/OPERATIONS.md)


def delay_s(prev_ts_ms: int | None, ts_ms: int, speed: float, cap_s: float = MAX_GAP_S) -> float:
    """Seconds to wait before sending an event stamped `ts_ms` after one stamped `prev_ts_ms`."""
    if prev_ts_ms is None or ts_ms <= prev_ts_ms:
        return 0.0
    return min((ts_ms - prev_ts_ms) / 1000.0 / speed, cap_s)
