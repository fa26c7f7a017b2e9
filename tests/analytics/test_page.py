"""The page (GET /) in a real headless Chromium against a real worker with real data.

Chromium comes from Debian's packages (.ci/run installs it); without it the test
is skipped, except in CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.analytics.test_retro import Session
from tests.brokers import Broker
from tests.conftest import TEST_PARTITIONS
from tests.ingest.harness import end_offsets, produce, start_worker, wait_committed
from workers.codec import batch
from workers.codec.event import complete_event, encode_event

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)


def sessions() -> list[Session]:
    out = []
    for i in range(3):
        s = Session(f"page-{i}")
        s.add("message", agent="claude", host="h", workspace="~/w")
        s.usage(20_000 + 1000 * i)
        s.shell("pytest", ok=i != 1)
        s.shell("make build", ok=False)
        s.usage(30_000, model="gpt-5.1-codex", dt_s=86_400)  # the next day, another model
        out.append(s)
    return out


def test_page_renders_in_chromium(fresh_broker: Broker, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must have chromium (.ci/run installs it)"
    bootstrap = fresh_broker.bootstrap
    messages = [
        (s.sid, batch.join([encode_event(complete_event(e)) for e in s.events])) for s in sessions()
    ]
    worker = start_worker(bootstrap, tmp_path / "data", TEST_PARTITIONS, tmp_path / "w.log")
    try:
        asyncio.run(produce(bootstrap, messages))
        wait_committed(bootstrap, asyncio.run(end_offsets(bootstrap, TEST_PARTITIONS)), 120)
        base = f"http://127.0.0.1:{worker.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/team/sessions") as resp:
                if json.load(resp)["count"] == 3:
                    break
            time.sleep(0.5)
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{base}/",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        assert worker.stop() == 0, worker.log_text()[-2000:]
    dom, log = proc.stdout, proc.stderr
    assert proc.returncode == 0, log[-2000:]
    console = [ln for ln in log.splitlines() if "CONSOLE" in ln]
    assert not [ln for ln in console if "rror" in ln or "Uncaught" in ln], console
    assert 'data-loaded="yes"' in dom and 'data-timeline="yes"' in dom, dom[-2000:]
    assert all(f"page-{i}" in dom for i in range(3))
    assert dom.count('class="cost-bar"') >= 2  # two days, two models
    assert len(re.findall(r'class="(?:ok|error) tool-bar"', dom)) == 1  # Bash
    assert 'class="error timeline-item"' in dom and 'class="ok timeline-item"' in dom
    assert "ms, failed" in dom  # a tool call paired with its failing result, with its duration
