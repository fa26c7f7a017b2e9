"""The bundled sample sessions (workers/samples/*-session.jsonl) as complete Events.

Each sample file holds one agent's hook payloads, one hook call per line, in
order. `sample_events` runs them through the real redaction and mapping with
seq = line position and a deterministic clock, so the same Events come out
every time (for `kaizen-stream up`, tests and demos). The sample payloads use
/home/dev as the home directory, so workspaces come out as `~/src/...`.

Not on the hook path: `complete_event` (fastavro) is imported inside the
function that needs it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from workers.hooks.mapping import clip, map_payload
from workers.hooks.redact import Redactor

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")
SAMPLE_FILES = {
    "claude": "claude-session.jsonl",
    "cursor": "cursor-session.jsonl",
    "codex": "codex-session.jsonl",
}
SAMPLE_HOME = "/home/dev"
SAMPLE_HOST = "dev-laptop"
# 2026-11-20T09:14:03Z, one session per hour, 1.5 s between hook calls
BASE_TS_MS = 1_795_166_043_000
STEP_MS = 1_500


def sample_payloads(agent: str) -> list[dict[str, Any]]:
    """The raw hook payloads of one agent's sample session, in order."""
    path = os.path.join(SAMPLES_DIR, SAMPLE_FILES[agent])
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sample_fields() -> list[dict[str, Any]]:
    """Event fields (seq included, not yet completed) of every bundled sample session."""
    redactor = Redactor(home=SAMPLE_HOME, user="dev")
    out: list[dict[str, Any]] = []
    for n, agent in enumerate(SAMPLE_FILES):
        for i, payload in enumerate(sample_payloads(agent)):
            ts = BASE_TS_MS + n * 3_600_000 + i * STEP_MS
            fields = map_payload(agent, redactor.obj(clip(payload)), ts, SAMPLE_HOST)
            fields["seq"] = i
            out.append(fields)
    return out


def sample_events() -> list[dict[str, Any]]:
    """Every bundled sample session as complete Events (schema defaults filled in)."""
    from workers.codec.event import complete_event

    return [complete_event(f) for f in sample_fields()]
