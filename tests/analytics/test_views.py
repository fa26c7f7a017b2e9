"""`sessions` (filters, sorting, tokens and cost) and `stats --by` over a real data dir."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.analytics.test_retro import Session
from workers.analytics.aggregate import SessionSummary
from workers.analytics.prices import PriceBook
from workers.analytics.store import SummaryStore
from workers.analytics.views import totals_by, totals_of_rows
from workers.cli import main as cli_main
from workers.codec import batch
from workers.codec.event import complete_event, encode_event
from workers.ingest.partition import PartitionState

DAY = 86_400_000
SONNET = "claude-sonnet-4-5-20250929"


def sessions() -> list[Session]:
    cheap = Session("cheap")
    cheap.add("cost", model=SONNET, tokens_in=100_000, agent="claude", host="h1", workspace="~/a")
    dear = Session("dear")
    dear.add("cost", model=SONNET, tokens_out=1_000_000, agent="claude", host="h2", workspace="~/b")
    dear.add("cost", DAY / 1000, model=SONNET, tokens_out=1_000_000)  # the next day
    for _ in range(2):
        dear.shell("make", ok=False)
    odd = Session("odd")
    odd.add("cost", model="acme-9000", tokens_in=500, agent="codex", host="h1", workspace="~/a")
    return [cheap, dear, odd]


def data_dir(tmp_path: Path) -> Path:
    state = PartitionState(0, tmp_path / "hotlog" / "kaizen.events-0")
    state.open()

    async def go() -> None:
        for i, s in enumerate(sessions()):
            state.process(i, batch.join([encode_event(complete_event(e)) for e in s.events]), b"k")
        await state.flush()

    asyncio.run(go())
    state.fold_summaries(10**6)
    state.close()
    return tmp_path


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def test_sessions_sorted_and_filtered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(data_dir(tmp_path))
    assert cli_main(["sessions", "--data-dir", d, "--json", "--sort", "cost"]) == 0
    rows = lines(capsys)
    assert [r["session_id"] for r in rows] == ["dear", "cheap", "odd"]
    assert rows[0]["cost_usd"] == pytest.approx(30.0) and rows[1]["cost_usd"] == pytest.approx(0.3)
    assert rows[2]["unpriced_models"] == ["acme-9000"] and rows[2]["cost_usd"] == 0
    assert rows[0]["failures"] == 2 and rows[0]["tokens"] == 2_000_000
    assert cli_main(["sessions", "--data-dir", d, "--json", "--sort", "failures"]) == 0
    assert lines(capsys)[0]["session_id"] == "dear"
    assert cli_main(["sessions", "--data-dir", d, "--json", "--host", "h1"]) == 0
    assert {r["session_id"] for r in lines(capsys)} == {"cheap", "odd"}
    assert cli_main(["sessions", "--data-dir", d, "--json", "--model", "acme"]) == 0
    assert [r["session_id"] for r in lines(capsys)] == ["odd"]
    assert cli_main(["sessions", "--data-dir", d, "--json", "--workspace", "~/b"]) == 0
    assert [r["session_id"] for r in lines(capsys)] == ["dear"]
    assert cli_main(["sessions", "--data-dir", d, "--json", "--since", "2099-01-01"]) == 0
    assert lines(capsys) == []
    assert cli_main(["sessions", "--data-dir", d]) == 0
    out = capsys.readouterr().out
    assert "$30.00" in out and "+?" in out and "KAIZEN_PRICES_FILE" in out
    assert cli_main(["sessions", "--data-dir", d, "--since", "soonish"]) == 2


def test_stats_by(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(data_dir(tmp_path))
    assert cli_main(["stats", "--by", "model", "--data-dir", d, "--json"]) == 0
    by = {r["model"]: r for r in lines(capsys)}
    assert by[SONNET]["cost_usd"] == pytest.approx(30.3) and by[SONNET]["sessions"] == 2
    assert by["acme-9000"]["unpriced_tokens"] == 500 and by["acme-9000"]["cost_usd"] == 0
    assert cli_main(["stats", "--by", "day", "--data-dir", d, "--json"]) == 0
    days = sorted(lines(capsys), key=lambda r: r["day"])
    assert [r["cost_usd"] for r in days] == pytest.approx([15.3, 15.0])  # dear's 2nd day apart
    assert cli_main(["stats", "--by", "host", "--data-dir", d, "--json"]) == 0
    assert {r["host"]: r["failures"] for r in lines(capsys)} == {"h1": 0, "h2": 2}
    assert cli_main(["stats", "--by", "agent", "--data-dir", d]) == 0
    assert "claude" in capsys.readouterr().out
    assert cli_main(["stats", "--by", "colour", "--data-dir", d]) == 2
    assert cli_main(["stats", "--data-dir", d, "--json", "--since", "2000-01-01"]) == 0
    assert {r["model"]: r["sessions"] for r in lines(capsys)} == {SONNET: 2, "acme-9000": 1}
    assert cli_main(["stats", "--data-dir", d, "--json", "--since", "2099-01-01"]) == 0
    assert lines(capsys) == []


def test_stats_since_equals_the_row_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats --since` (day-keyed rollups + the rows of since's day) prints what rolling up
    every stats row active since then prints, for cuts on, around and between the days."""
    d = data_dir(tmp_path)
    rows = SummaryStore.read_rows(d / "hotlog" / "kaizen.events-0")
    cuts = {1}
    for r in rows:
        t = r.last_ts or 0
        cuts |= {t, t + 1, t - 1, t - t % DAY, t - t % DAY + DAY, t + 3 * DAY}
    book = PriceBook.from_env()
    for since in sorted(cuts):
        for by in ("model", "day", "host"):
            argv = ["stats", "--by", by, "--data-dir", str(d), "--json", "--since", str(since)]
            assert cli_main(argv) == 0
            got = {r.pop(by): r for r in lines(capsys)}
            active = [r for r in rows if (r.last_ts or 0) >= since]
            want = {g: t.to_json() for g, t in totals_of_rows(active, by, book).items()}
            # cost equal up to float summation order, everything else exactly
            cost = {g: r.pop("cost_usd") for g, r in got.items()}
            assert cost == pytest.approx({g: r.pop("cost_usd") for g, r in want.items()})
            assert got == want, (since, by)


def test_long_context_requests_priced_at_the_long_context_tier() -> None:
    s = SessionSummary("s")
    s.fold(
        {
            "session_id": "s",
            "seq": 0,
            "ts_ms": 1_760_000_000_000,
            "kind": "cost",
            "model": SONNET,
            "tokens_in": 1_000_000,
        }
    )
    assert totals_by([s], "model", PriceBook())[SONNET].cost_usd == pytest.approx(6.0)


def test_totals_by_rejects_unknown_group() -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        totals_by([SessionSummary("s")], "colour", PriceBook())


def test_timeline_pairs_calls_with_results_in_any_order() -> None:
    from workers.analytics.views import timeline

    s = Session("t")
    s.shell("pytest", ok=True)
    s.shell("make", ok=False)
    s.add("error", payload={"hook_event_name": "StopFailure"})  # no tool call of its own
    events = list(reversed(s.events))  # order given does not matter
    items = timeline(events)
    assert [(i["kind"], i["tool"], i["error"]) for i in items] == [
        ("tool_call", "Bash", False),
        ("tool_call", "Bash", True),
        ("error", None, True),
    ]
    assert items[0]["result_seq"] == 1 and items[0]["duration_ms"] == 10_000


def test_cost_by_day_and_model_and_tool_rates(tmp_path: Path) -> None:
    from workers.analytics.aggregate import fold_all
    from workers.analytics.views import cost_by_day_and_model, tool_failure_rates

    summaries = fold_all([e for s in sessions() for e in s.events]).values()
    by_day = cost_by_day_and_model(summaries, PriceBook())
    assert list(by_day) == sorted(by_day) and len(by_day) == 2
    assert by_day[min(by_day)]["acme-9000"] == 0  # unknown: not priced, shown as nothing
    rates = tool_failure_rates(summaries)
    assert rates == {"Bash": {"calls": 2, "failures": 2, "rate": 1.0}}
