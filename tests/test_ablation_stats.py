"""The ablation report's statistics on inputs whose answers are known by hand."""

from __future__ import annotations

import pytest

from vdata.trainers.ablation import area_under_curve, best_step, paired, spread


def test_spread_is_the_mean_and_the_sample_standard_deviation():
    assert spread([1.0, 2.0, 3.0]) == pytest.approx(spread([3.0, 1.0, 2.0]))
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)  # sqrt(((1)^2 + 0 + (1)^2) / 2) = 1
    assert spread([0.4]).std == 0.0
    with pytest.raises(ValueError, match="no finished run"):
        spread([])


def test_paired_difference_seeds_won_and_a_bootstrap_interval():
    baseline = {0: 0.50, 1: 0.40, 2: 0.60}
    variant = {0: 0.60, 1: 0.60, 2: 0.90, 3: 0.99}  # seed 3 has no baseline: not paired
    result = paired(baseline, variant)
    assert result.difference == pytest.approx(0.2)  # (0.1 + 0.2 + 0.3) / 3
    assert (result.seeds_won, result.seeds) == (3, 3)
    eps = 1e-9  # resampled means lie between the smallest and the largest difference
    assert 0.1 - eps <= result.low < 0.2 < result.high <= 0.3 + eps
    assert paired(baseline, variant) == result  # seeded
    same = paired(baseline, baseline)
    assert (same.difference, same.seeds_won, same.low, same.high) == (0.0, 0, 0.0, 0.0)
    mixed = paired({0: 0.5, 1: 0.5}, {0: 0.7, 1: 0.3})
    assert mixed.difference == pytest.approx(0.0) and mixed.seeds_won == 1 and mixed.low < 0 < mixed.high
    with pytest.raises(ValueError, match="share no finished seed"):
        paired({0: 0.1}, {1: 0.2})


def test_area_under_the_eval_curve_and_the_best_step():
    assert area_under_curve([0, 10, 20], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert area_under_curve([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert area_under_curve([0, 10, 30], [0.0, 1.0, 1.0]) == pytest.approx((5 + 20) / 30)  # uneven steps
    assert area_under_curve([5], [0.3]) == 0.3
    assert best_step([0, 10, 20, 30], [0.1, 0.4, 0.4, 0.2]) == 10  # the earliest of a tie
    with pytest.raises(ValueError):
        area_under_curve([0, 1], [0.5])
