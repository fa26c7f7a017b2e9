"""What a model's tokens cost on a given day: genai-prices, overridden by a local file.

Source: the `genai-prices` package (pydantic/genai-prices; current and
historical prices per provider and model, with the dates they took effect and
long-context tiers), chosen over litellm (its price map comes with a very
large package) and tokencost (pulls tiktoken and provider SDKs; no dated
prices). A price file (`$KAIZEN_PRICES_FILE`, JSON) takes precedence, for
negotiated prices or models the library does not know:

    {"models": {
        "claude-sonnet-4-5*": [
            {"from": "2025-09-29", "input": 2.4, "output": 12,
             "cache_write": 3.0, "cache_read": 0.24}
        ]}}

Prices are USD per million tokens; a key ending in `*` matches model names
that start with the rest; of a model's entries the one with the latest `from`
on or before the day applies. `cache_write` / `cache_read` default to `input`.

Long context: a request whose prompt (input and cache) passes 200k tokens is
billed at the model's long-context tier for all its tokens (Anthropic's pricing,
as genai-prices models it); summaries keep such requests in their own buckets
(workers/analytics/aggregate.py `usage_key`). ccusage bills only each token
type's excess at the higher rate, so its cost for such sessions is lower
(bench/compare_ccusage.py marks them).

Invariants: `rates` returns None for a model neither source knows, never a
zero price; the result is a function of (model, day, context class) only, so
pricing at read time re-prices history whenever a price is corrected.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from workers.errors import KaizenError

PRICES_FILE_ENV = "KAIZEN_PRICES_FILE"
LONG_CONTEXT_START = 200_000  # the long-context tier we apply to usage buckets marked large


class PricesFileError(KaizenError, ValueError):
    """The local price file is unreadable or malformed; the message says where."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens, and where they come from."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    source: str

    def cost(self, tokens_in: int, tokens_out: int, cache_write: int, cache_read: int) -> float:
        return (
            tokens_in * self.input
            + tokens_out * self.output
            + cache_write * self.cache_write
            + cache_read * self.cache_read
        ) / 1e6


def load_prices_file(path: str) -> dict[str, list[dict[str, Any]]]:
    """The `models` table of a price file, validated and sorted by `from`."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise PricesFileError(f"cannot read the price file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise PricesFileError(f"the price file {path} is not JSON: {exc}") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict):
        raise PricesFileError(f'the price file {path} needs an object "models"')
    out: dict[str, list[dict[str, Any]]] = {}
    for name, entries in models.items():
        entries = entries if isinstance(entries, list) else [entries]
        checked = []
        for entry in entries:
            where = f"{path}: model {name!r}"
            if not isinstance(entry, dict):
                raise PricesFileError(f"{where}: each price is an object")
            try:
                start = date.fromisoformat(str(entry.get("from", "1970-01-01")))
                prices = {k: float(entry[k]) for k in ("input", "output")}
                for k in ("cache_write", "cache_read"):
                    prices[k] = float(entry.get(k, prices["input"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise PricesFileError(
                    f"{where}: needs numbers input and output and an ISO date from ({exc})"
                ) from None
            checked.append({"from": start, **prices})
        out[name] = sorted(checked, key=lambda e: e["from"])
    return out


def _tier(value: Any, large: bool) -> float | None:
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return float(value)
    price = value.base
    if large:
        for tier in tiers:
            if tier.start <= LONG_CONTEXT_START:
                price = tier.price
    return float(price)


@lru_cache(maxsize=4096)
def library_rates(model: str, day: date, large: bool) -> Rates | None:
    """Rates from genai-prices for the model on that (UTC) day; None when it does not know it."""
    from genai_prices.data_snapshot import get_snapshot

    try:
        provider, info = get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
        return None
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    price = info.get_prices(when)
    inp = _tier(getattr(price, "input_mtok", None), large)
    out = _tier(getattr(price, "output_mtok", None), large)
    if inp is None or out is None:
        return None
    write = _tier(getattr(price, "cache_write_mtok", None), large)
    read = _tier(getattr(price, "cache_read_mtok", None), large)
    return Rates(
        inp,
        out,
        inp if write is None else write,
        inp if read is None else read,
        f"genai-prices {provider.id}/{info.id}",
    )


class PriceBook:
    """Prices from the local file first, then the library; cached per (model, day, class)."""

    def __init__(
        self, overrides: dict[str, list[dict[str, Any]]] | None = None, *, library: bool = True
    ) -> None:
        self.overrides = overrides or {}
        self.library = library
        self._cache: dict[tuple[str, date, bool], Rates | None] = {}

    @classmethod
    def from_env(cls) -> PriceBook:
        path = os.environ.get(PRICES_FILE_ENV)
        return cls(load_prices_file(path) if path else None)

    def _override(self, model: str, day: date) -> Rates | None:
        entries = self.overrides.get(model)
        if entries is None:
            matches = [k for k in self.overrides if k.endswith("*") and model.startswith(k[:-1])]
            if not matches:
                return None
            entries = self.overrides[max(matches, key=len)]  # the most specific prefix
        chosen = [e for e in entries if e["from"] <= day]
        if not chosen:
            return None
        e = chosen[-1]
        return Rates(e["input"], e["output"], e["cache_write"], e["cache_read"], "price file")

    def rates(self, model: str | None, day: date, large: bool = False) -> Rates | None:
        """The rates in force for `model` on `day`; None when no source knows the model."""
        if not model:
            return None
        key = (model, day, large)
        if key not in self._cache:
            found = self._override(model, day)
            if found is None and self.library:
                found = library_rates(model, day, large)
            self._cache[key] = found
        return self._cache[key]
