"""Prometheus counters by agent and model, counted as the worker folds."""

from __future__ import annotations

from pathlib import Path

from tests.analytics.test_store import ingest, opened, sample_messages
from workers.analytics.counters import UsageCounters, render
from workers.analytics.prices import PriceBook
from workers.codec.event import complete_event, encode_event
from workers.hooks.redact import Redactor
from workers.importer.transcripts import find_transcripts, transcript_events

ROOT = Path(__file__).resolve().parents[2]


def metric(text: str, line_start: str) -> float:
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start))


def test_counters_from_a_fold_count_each_event_once(tmp_path: Path) -> None:
    imported = []
    for path in find_transcripts([str(ROOT / "workers" / "samples" / "transcripts")]):
        imported += [encode_event(complete_event(e)) for e in transcript_events(path, Redactor())]
    state = opened(tmp_path)
    ingest(state, sample_messages() + imported)
    state.fold_summaries(10**6)
    ingest(state, imported, first_offset=10_000)  # sent again: deduped, nothing more counted
    state.fold_summaries(10**6)
    assert state.summaries is not None
    text = render([state.summaries.counters])
    summaries = list(state.summaries.all())
    state.close()
    sonnet = 'agent="claude",model="claude-sonnet-4-5-20250929"'
    assert metric(text, f'kaizen_tokens_total{{{sonnet},kind="out"}}') == 507
    assert (
        metric(text, 'kaizen_tokens_total{agent="codex",model="gpt-5.1-codex",kind="in"}') == 7592
    )
    assert metric(text, f"kaizen_cost_usd_total{{{sonnet}}}") == round(0.0335085, 6)
    assert metric(text, 'kaizen_cost_usd_total{agent="codex"') == 0.018046
    # hooks (claude, codex, cursor) + the Claude transcript's calls; the Codex rollout's
    # three calls are the ones its hooks reported (same call ids): counted once, as in
    # the summaries
    assert metric(text, "kaizen_tool_calls_total") == 7 + 6 + 6 + 3
    assert metric(text, "kaizen_tool_calls_total") == sum(
        sum(s.tool_calls.values()) for s in summaries
    )
    assert metric(text, "kaizen_tool_failures_total") == sum(s.failures for s in summaries) >= 3
    assert "# TYPE kaizen_unpriced_tokens_total counter" in text


def test_unknown_models_are_counted_as_unpriced() -> None:
    c = UsageCounters(PriceBook())
    from workers.analytics.aggregate import Counted, SessionSummary

    c.count(
        {"kind": "cost", "agent": "codex", "model": "acme-9000", "tokens_in": 5, "ts_ms": 1},
        SessionSummary("s"),
        Counted(),
    )
    text = render([c, UsageCounters()])
    assert 'kaizen_unpriced_tokens_total{agent="codex",model="acme-9000"} 5' in text
    assert "kaizen_cost_usd_total{" not in text
