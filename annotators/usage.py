"""Accounting: requests, tokens, retries, cache hits, latency and cost per model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COUNTERS = (
    "requests",
    "successes",
    "failures",
    "retries",
    "repairs",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
)


@dataclass
class ModelUsage:
    requests: int = 0  # requests sent to the server (attempts included)
    successes: int = 0
    failures: int = 0
    retries: int = 0
    repairs: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def summary(self, price_in: float | None = None, price_out: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        lat = sorted(self.latencies_s)
        if lat:
            out["latency_s"] = {f"p{q}": round(_percentile(lat, q), 4) for q in (50, 90, 99)}
        if price_in is not None or price_out is not None:
            cost = self.prompt_tokens * (price_in or 0) + self.completion_tokens * (price_out or 0)
            out["cost_usd"] = round(cost / 1e6, 6)
        return out


def _percentile(ordered: list[float], q: float) -> float:
    index = (len(ordered) - 1) * q / 100
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


class Usage:
    """Usage per model within one stage (or one benchmark)."""

    def __init__(self) -> None:
        self.models: dict[str, ModelUsage] = {}
        self.prices: dict[str, tuple[float | None, float | None]] = {}

    def of(self, model: str) -> ModelUsage:
        return self.models.setdefault(model, ModelUsage())

    def set_price(self, model: str, price_in: float | None, price_out: float | None) -> None:
        if price_in is not None or price_out is not None:
            self.prices[model] = (price_in, price_out)

    def summary(self) -> dict[str, dict[str, Any]]:
        return {m: u.summary(*self.prices.get(m, (None, None))) for m, u in sorted(self.models.items())}

    def line(self) -> str:
        """A short live status: tokens, requests, cache hits, failures."""
        total = {name: sum(getattr(u, name) for u in self.models.values()) for name in COUNTERS}
        tokens = total["prompt_tokens"] + total["completion_tokens"]
        return (
            f"{tokens:,} tok, {total['requests']} req, {total['cache_hits']} cached, "
            f"{total['retries']} retried, {total['failures']} failed"
        )
