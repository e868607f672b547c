"""Accounting: requests, tokens, retries, cache hits, latency and cost per model.

`Usage` counts within one stage's shard. With a `UsageLedger` attached, every
count is also appended to the run's ledger the moment it happens, so that a run
killed mid-shard still has on record what it paid for; run.json's usage is the
ledger summed over every invocation of the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
    successes: int = 0  # calls that ended with a valid answer (from the server or the cache)
    failures: int = 0  # calls that ended without one
    retries: int = 0
    repairs: int = 0
    cache_hits: int = 0  # answers (turns of a conversation) read from the cache
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def summary(self, price_in: float | None = None, price_out: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        lat = sorted(self.latencies_s)
        if lat:
            out["latency_s"] = {f"p{q}": round(_percentile(lat, q), 4) for q in (50, 90, 99)}
        if price_in is not None or price_out is not None:
            out["cost_usd"] = round(_cost(self.prompt_tokens, self.completion_tokens, price_in, price_out), 6)
        return out


def _cost(prompt: int, completion: int, price_in: float | None, price_out: float | None) -> float:
    return (prompt * (price_in or 0) + completion * (price_out or 0)) / 1e6


def _percentile(ordered: list[float], q: float) -> float:
    index = (len(ordered) - 1) * q / 100
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


class UsageLedger:
    """Appends one JSON line per count to a run's ledger file: which invocation of the run,
    which stage, which model, what was counted. Lines are short and written whole, so a
    kill leaves at most one torn last line, which `read_ledger` ignores."""

    def __init__(self, path: str | Path, *, invocation: int, stage: str):
        self.path = Path(path)
        self.invocation = invocation
        self.stage = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, model: str, counts: Mapping[str, Any]) -> None:
        line = {"invocation": self.invocation, "stage": self.stage, "model": model, **counts}
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Every whole line of a ledger; none when there is no ledger."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # the torn last line of a killed process
        if isinstance(item, dict):
            lines.append(item)
    return lines


def sum_usage(lines: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Ledger lines added up per model, with latency percentiles and cost."""
    models: dict[str, ModelUsage] = {}
    costs: dict[str, float] = {}
    for line in lines:
        model = str(line.get("model", ""))
        counters = models.setdefault(model, ModelUsage())
        for name in COUNTERS:
            setattr(counters, name, getattr(counters, name) + int(line.get(name, 0)))
        if "latency_s" in line:
            counters.latencies_s.append(float(line["latency_s"]))
        if "cost_usd" in line:
            costs[model] = costs.get(model, 0.0) + float(line["cost_usd"])
    out = {}
    for model, counters in sorted(models.items()):
        out[model] = counters.summary()
        if model in costs:
            out[model]["cost_usd"] = round(costs[model], 6)
    return out


def ledger_totals(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(usage per stage over all invocations, usage per invocation and stage) of a ledger."""
    by_stage: dict[str, list[dict[str, Any]]] = {}
    by_invocation: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line in read_ledger(path):
        stage, invocation = str(line.get("stage", "")), str(line.get("invocation", 0))
        by_stage.setdefault(stage, []).append(line)
        by_invocation.setdefault(invocation, {}).setdefault(stage, []).append(line)
    return (
        {stage: sum_usage(lines) for stage, lines in by_stage.items()},
        {
            inv: {stage: sum_usage(lines) for stage, lines in stages.items()}
            for inv, stages in sorted(by_invocation.items(), key=lambda item: int(item[0]))
        },
    )


class Usage:
    """Usage per model within one stage (or one benchmark); `add` also writes to the ledger."""

    def __init__(self, ledger: UsageLedger | None = None) -> None:
        self.models: dict[str, ModelUsage] = {}
        self.prices: dict[str, tuple[float | None, float | None]] = {}
        self.ledger = ledger

    def of(self, model: str) -> ModelUsage:
        return self.models.setdefault(model, ModelUsage())

    def add(self, model: str, latency_s: float | None = None, **counts: int) -> None:
        """Counts something that happened (a request sent, tokens paid, a cache hit)."""
        counters = self.of(model)
        for name, value in counts.items():
            setattr(counters, name, getattr(counters, name) + value)
        if latency_s is not None:
            counters.latencies_s.append(latency_s)
        if self.ledger is not None:
            line: dict[str, Any] = {k: v for k, v in counts.items() if v}
            if latency_s is not None:
                line["latency_s"] = round(latency_s, 4)
            if model in self.prices and (counts.get("prompt_tokens") or counts.get("completion_tokens")):
                cost = _cost(
                    counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0), *self.prices[model]
                )
                line["cost_usd"] = round(cost, 8)
            self.ledger.write(model, line)

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
