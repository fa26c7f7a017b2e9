"""Pricing a SessionSummary's cost inputs at read time. Pure given a PriceBook.

Invariant: tokens of a model no price source knows are reported under
`unknown` (model -> tokens), never priced at zero and never dropped; a
session whose every token is priced has `complete` true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from workers.analytics.aggregate import SessionSummary, split_usage_key
from workers.analytics.prices import PriceBook


@dataclass
class CostReport:
    usd: float = 0.0
    by_model: dict[str, float] = field(default_factory=dict)
    by_day: dict[str, float] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)  # model -> tokens left unpriced

    @property
    def complete(self) -> bool:
        return not self.unknown

    def add(self, other: CostReport) -> None:
        self.usd += other.usd
        for mine, theirs in ((self.by_model, other.by_model), (self.by_day, other.by_day)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + v
        for k, n in other.unknown.items():
            self.unknown[k] = self.unknown.get(k, 0) + n


def price_usage(usage: dict[str, list[int]], book: PriceBook) -> CostReport:
    """Price cost-input buckets (SessionSummary.usage) with the prices in force on their days."""
    report = CostReport()
    for key, (tin, tout, cw, cr) in usage.items():
        model, day, large = split_usage_key(key)
        rates = book.rates(model, date.fromisoformat(day), large)
        name = model or "?"
        if rates is None:
            if tin + tout + cw + cr:
                report.unknown[name] = report.unknown.get(name, 0) + tin + tout + cw + cr
            continue
        usd = rates.cost(tin, tout, cw, cr)
        report.usd += usd
        report.by_model[name] = report.by_model.get(name, 0.0) + usd
        report.by_day[day] = report.by_day.get(day, 0.0) + usd
    return report


def session_cost(summary: SessionSummary, book: PriceBook) -> CostReport:
    return price_usage(summary.usage, book)
