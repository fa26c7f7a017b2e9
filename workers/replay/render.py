"""How replay and tail print events. Pure.

`jsonl`: one JSON object per line with the Event schema's field names, in
schema order (what `decode_event` returns). `pretty`: one readable line:
local time, session, agent, kind, tool, tokens.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from workers.codec.event import field_names

FORMATS = ("jsonl", "pretty")


def event_json(event: dict[str, Any]) -> str:
    names = field_names()
    ordered = {name: event[name] for name in names if name in event}
    if len(ordered) != len(event):  # fields of no schema version we know: keep them, last
        ordered.update((k, v) for k, v in event.items() if k not in ordered)
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


def _tokens(event: dict[str, Any]) -> str:
    tin, tout = event.get("tokens_in"), event.get("tokens_out")
    if tin is None and tout is None:
        return ""
    return f"tokens {tin if tin is not None else '-'}/{tout if tout is not None else '-'}"


def event_line(event: dict[str, Any], session_width: int = 12) -> str:
    ts = datetime.fromtimestamp(int(event.get("ts_ms", 0)) / 1000).strftime("%Y-%m-%d %H:%M:%S.%f")[
        :-3
    ]
    session = str(event.get("session_id", ""))
    if len(session) > session_width:
        session = session[: session_width - 1] + "…"
    parts = [
        ts,
        f"{session:<{session_width}}",
        f"#{event.get('seq', '?'):<5}",
        f"{event.get('agent', '-'):<6}",
        f"{event.get('kind', '-'):<11}",
        f"{event.get('tool') or '-':<14}",
        _tokens(event),
    ]
    return " ".join(parts).rstrip()


def render(event: dict[str, Any], fmt: str) -> str:
    return event_line(event) if fmt == "pretty" else event_json(event)
