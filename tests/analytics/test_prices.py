"""Prices: genai-prices by date and context tier, a local file first, unknown models reported."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from workers.analytics.aggregate import SessionSummary
from workers.analytics.cost import session_cost
from workers.analytics.prices import PriceBook, PricesFileError, load_prices_file

DAY = date(2026, 11, 20)


def summary(model: str, day: str = "2026-11-20") -> SessionSummary:
    s = SessionSummary("s")
    s.usage = {f"{model}\t{day}\tS": [1_000_000, 1_000_000, 1_000_000, 1_000_000]}
    return s


def test_library_rates_and_long_context_tier() -> None:
    book = PriceBook()
    r = book.rates("claude-sonnet-4-5-20250929", DAY)
    assert r is not None and (r.input, r.output, r.cache_write, r.cache_read) == (3, 15, 3.75, 0.3)
    big = book.rates("claude-sonnet-4-5-20250929", DAY, large=True)
    assert big is not None and (big.input, big.output) == (6, 22.5)
    gpt = book.rates("gpt-5.1-codex", DAY)
    assert gpt is not None and gpt.cache_read == 0.125 and gpt.cache_write == gpt.input


def test_unknown_model_is_reported_never_priced_at_zero() -> None:
    report = session_cost(summary("acme-llm-9000"), PriceBook())
    assert report.usd == 0 and report.unknown == {"acme-llm-9000": 4_000_000}
    assert not report.complete
    known = session_cost(summary("claude-sonnet-4-5-20250929"), PriceBook())
    assert known.complete and known.usd == pytest.approx(3 + 15 + 3.75 + 0.3)


def test_price_file_overrides_by_date_and_prefix(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "models": {
                    "claude-sonnet-4-5*": [
                        {"from": "2025-01-01", "input": 2, "output": 10},
                        {"from": "2026-11-01", "input": 1, "output": 5, "cache_read": 0.1},
                    ],
                    "acme-llm-9000": {"input": 1, "output": 1},
                }
            }
        )
    )
    book = PriceBook(load_prices_file(str(path)))
    old = book.rates("claude-sonnet-4-5-20250929", date(2026, 10, 31))
    new = book.rates("claude-sonnet-4-5-20250929", DAY)
    assert old is not None and (old.input, old.cache_write, old.source) == (2, 2, "price file")
    assert new is not None and (new.input, new.cache_read) == (1, 0.1)
    assert book.rates("acme-llm-9000", DAY) is not None
    # correcting a price re-prices the same stored summary: cost is computed when read
    s = summary("claude-sonnet-4-5-20250929")
    assert session_cost(s, book).usd == pytest.approx(1 + 5 + 1 + 0.1)
    assert session_cost(s, PriceBook()).usd == pytest.approx(3 + 15 + 3.75 + 0.3)


def test_price_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"models": {"x": {"input": 1, "output": 2}}}')
    monkeypatch.setenv("KAIZEN_PRICES_FILE", str(path))
    assert PriceBook.from_env().rates("x", DAY) is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ("[]", '"models"'),
        ('{"models": {"x": [{"input": 1}]}}', "needs numbers"),
        ('{"models": {"x": [{"input": 1, "output": 1, "from": "soon"}]}}', "ISO date"),
    ],
)
def test_bad_price_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(PricesFileError, match=message):
        load_prices_file(str(path))
    with pytest.raises(PricesFileError, match="cannot read"):
        load_prices_file(str(tmp_path / "missing.json"))
