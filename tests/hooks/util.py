"""Helpers for the hook, shipper and importer tests: run hooks, read the spool, read Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.codec.batch import is_batch, split
from workers.codec.event import decode_event
from workers.hooks.spool import iter_frames
from workers.settings import EVENTS_TOPIC

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "workers" / "hooks" / "_entry.py"


def hook_env(spool: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KAIZEN_SPOOL_DIR"] = str(spool)
    env.setdefault("KAIZEN_HOOK_NO_SHIP", "1")
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def run_hook(
    agent: str, payload: Any, env: dict[str, str], *, argv_payload: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """The installed lean command, as the agent runs it."""
    data = json.dumps(payload)
    args = [sys.executable, "-I", "-S", str(ENTRY), agent]
    if argv_payload:
        args.append(data)
    return subprocess.run(
        args, input=b"" if argv_payload else data.encode(), env=env, capture_output=True
    )


def spool_bytes(spool: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((spool / "seg").glob("*.seg")))


def spooled_fields(spool: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((spool / "seg").glob("*.seg")):
        out += [f.fields() for f in iter_frames(path.read_bytes(), 0, 0)]
    return out


async def _consume_raw(bootstrap: str, want: int, timeout: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = None
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(EVENTS_TOPIC)
            if not parts:
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        tps = [TopicPartition(EVENTS_TOPIC, p) for p in sorted(parts or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        count = 0
        while time.monotonic() < deadline and count < want:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    values.append(r.value)
                    count += len(split(r.value)) if is_batch(r.value) else 1
        return values
    finally:
        await consumer.stop()


def consume_raw(bootstrap: str, want: int, timeout: float = 30.0) -> list[bytes]:
    """Raw kaizen.events message values from the beginning (until `want` events are seen)."""
    return asyncio.run(_consume_raw(bootstrap, want, timeout))


def decode_all(values: list[bytes]) -> list[dict[str, Any]]:
    events = []
    for v in values:
        items = split(v) if is_batch(v) else [v]
        events += [decode_event(i) for i in items]
    return events


def consume_events(
    bootstrap: str, want: int, timeout: float = 30.0, sessions: set[str] | None = None
) -> list[dict[str, Any]]:
    events = decode_all(consume_raw(bootstrap, want, timeout))
    if sessions is not None:
        events = [e for e in events if e["session_id"] in sessions]
    return events


def shipper_pid(spool: Path) -> int | None:
    """The pid of the shipper a hook started for `spool` (None: none runs)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"--lock-fd" in cmd and str(spool).encode() in cmd:
                return int(entry.name)
    return None
