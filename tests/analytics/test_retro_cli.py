"""`kaizen-stream retro`: from a real data dir (hot log, index, summaries) to findings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.analytics.test_retro import Session
from workers.cli import main as cli_main
from workers.codec import batch
from workers.codec.event import complete_event, encode_event
from workers.ingest.partition import PartitionState


def data_dir(tmp_path: Path, fold: bool = True) -> Path:
    s = Session("retro-1")
    for _ in range(3):
        s.shell("make build", ok=False)
    quiet = Session("retro-2")
    quiet.shell("ls", ok=True)
    state = PartitionState(0, tmp_path / "hotlog" / "kaizen.events-0")
    state.open()

    async def go() -> None:
        for i, events in enumerate((s.events, quiet.events)):
            state.process(i, batch.join([encode_event(complete_event(e)) for e in events]), b"k")
        await state.flush()

    asyncio.run(go())
    if fold:
        state.fold_summaries(10**6)
    state.close()
    return tmp_path


@pytest.mark.parametrize("fold", [True, False])
def test_retro_session(tmp_path: Path, capsys: pytest.CaptureFixture[str], fold: bool) -> None:
    d = data_dir(tmp_path, fold)
    assert cli_main(["retro", "retro-1", "--data-dir", str(d), "--json"]) == 0
    rules = [json.loads(line)["rule"] for line in capsys.readouterr().out.splitlines()]
    assert rules == ["repeated-failing-command", "tool-errors"]
    assert cli_main(["retro", "retro-1", "--data-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "`make build` failed 3 times" in out and "suggestion:" in out


def test_retro_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = data_dir(tmp_path)
    assert cli_main(["retro", "--since", "2025-01-01", "--data-dir", str(d), "--json"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {f["session_id"] for f in found} == {"retro-1"}
    assert found[0]["seq_range"] == [0, 5]


def test_retro_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = data_dir(tmp_path)
    assert cli_main(["retro", "--data-dir", str(d)]) == 2
    assert cli_main(["retro", "nope", "--data-dir", str(d)]) == 2
    assert cli_main(["retro", "--since", "yesterday-ish", "--data-dir", str(d)]) == 2
    assert cli_main(["retro", "x", "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("kaizen-stream: ") == 4 and "Traceback" not in err
