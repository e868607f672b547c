"""Statistics of a data ablation (`vdata ablate`, issue 22; the command itself is still to come):
per variant, the mean and spread over seeds; against the first variant, the paired difference,
the seeds won and a bootstrap interval; a run's eval curve as area and best step.

Pure functions of numbers, so that the report can be checked on known inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for a single seed
    n: int


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample standard deviation over seeds."""
    if not values:
        raise ValueError("no values: a variant with no finished run has no statistics")
    array = np.asarray(values, dtype=float)
    return Spread(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0, len(array))


@dataclass(frozen=True)
class Paired:
    difference: float  # mean over shared seeds of (variant - baseline)
    seeds_won: int  # seeds where the variant is strictly better
    seeds: int
    low: float  # bootstrap percentile interval of the mean difference
    high: float


def paired(
    baseline: Mapping[int, float],
    variant: Mapping[int, float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Paired:
    """The variant against the baseline on the seeds both finished (a seed is a pairing: the
    same sampling order and initial noise), with a seeded bootstrap of the mean difference."""
    shared = sorted(set(baseline) & set(variant))
    if not shared:
        raise ValueError("the variant and the baseline share no finished seed")
    differences = np.asarray([variant[s] - baseline[s] for s in shared], dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    return Paired(
        float(differences.mean()),
        int((differences > 0).sum()),
        len(shared),
        float(np.quantile(means, tail)),
        float(np.quantile(means, 1 - tail)),
    )


def area_under_curve(steps: Sequence[float], values: Sequence[float]) -> float:
    """The eval curve's trapezoid area divided by its span of steps: its mean level over
    training (one point: that point)."""
    if len(steps) != len(values) or not steps:
        raise ValueError("steps and values must be non-empty and of one length")
    if len(steps) == 1:
        return float(values[0])
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum() / (x[-1] - x[0]))


def best_step(steps: Sequence[int], values: Sequence[float]) -> int:
    """The step of the highest value (the earliest, on a tie)."""
    if len(steps) != len(values) or not steps:
        raise ValueError("steps and values must be non-empty and of one length")
    return int(steps[int(np.argmax(values))])
