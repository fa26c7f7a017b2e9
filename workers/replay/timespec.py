"""Points in time as users type them, to epoch milliseconds. Pure (given `now`).

Accepted: a duration ago (`90s`, `15m`, `2h`, `7d`, `1w`); an ISO 8601 date or
date-time (`2026-11-25`, `2026-11-25T14:00`, `...Z` or `+01:00`; naive means
local time); epoch seconds (fewer than 11 digits) or epoch milliseconds.
Anything else is a ValueError whose message says what is accepted.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time_ms(text: str, now_ms: int | None = None) -> int:
    value = text.strip()
    if not value:
        raise ValueError("empty time")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    match = _DURATION.match(value)
    if match:
        return now - int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if value.isdigit():
        number = int(value)
        return number * 1000 if len(value) < 11 else number
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use 15m/2h/7d ago, an ISO date-time, "
            "or epoch seconds/milliseconds"
        ) from None
    return int(parsed.timestamp() * 1000)
