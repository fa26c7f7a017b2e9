"""Stats rows: what `stats` reads instead of full summaries, equal in every total."""

from __future__ import annotations

import json
import random

import pytest

from tests.analytics.test_views import sessions
from workers.analytics.aggregate import SessionSummary, fold_all
from workers.analytics.digest import ROW_VERSION, decode, digest, encode
from workers.analytics.prices import PriceBook
from workers.analytics.views import GROUP_KEYS, totals_by, totals_of_rows
from workers.hooks.samples import sample_events


def summaries() -> list[SessionSummary]:
    events = [e for s in sessions() for e in s.events] + list(sample_events())
    return list(fold_all(events).values())


def test_rows_round_trip_through_bytes() -> None:
    for s in summaries():
        row = digest(s)
        assert decode(encode(row)) == row
        assert row.events == s.event_count and row.failures == s.failures


@pytest.mark.parametrize("by", GROUP_KEYS)
def test_totals_from_stored_rows_equal_totals_from_summaries(by: str) -> None:
    book = PriceBook()
    found = summaries()
    random.Random(1).shuffle(found)
    from_rows = totals_of_rows([decode(encode(digest(s))) for s in found], by, book)
    from_summaries = totals_by(found, by, book)
    assert from_rows == from_summaries
    assert len(from_rows) >= 2 and any(t.cost_usd for t in from_rows.values())


def test_other_layouts_are_refused_not_misread() -> None:
    good = json.loads(encode(digest(summaries()[0])))
    for bad in ([ROW_VERSION + 1, *good[1:]], good[:-1], []):
        with pytest.raises(ValueError, match="stats row"):
            decode(json.dumps(bad).encode())
