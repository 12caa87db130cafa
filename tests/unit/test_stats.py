"""Paired statistics behind the accuracy gates (edgekd/stats.py), checked against exact values and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd import stats


def test_mcnemar_exact_p_values_match_the_binomial_distribution():
    # 8 discordant samples all won by one side: p = 2 * 0.5**8
    cand = np.array([1] * 8 + [1] * 50 + [0] * 42, bool)
    base = np.array([0] * 8 + [1] * 50 + [0] * 42, bool)
    result = stats.mcnemar(cand, base)
    assert (result["candidate_only"], result["baseline_only"]) == (8, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5 ** 8)
    # 3 vs 5 of 8: p = 2 * P(X <= 3) = 2 * (1 + 8 + 28 + 56) / 256
    cand = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    result = stats.mcnemar(cand, ~cand)
    assert result["p_value"] == pytest.approx(2 * 93 / 256)
    assert stats.mcnemar(cand, cand)["p_value"] == 1.0


def test_a_few_flipped_samples_out_of_ten_thousand_are_a_tie_not_a_loss():
    """The case that failed CI on an AVX-512 VNNI host: QAT+KD 3 images of 10,000 below PTQ."""
    rng = np.random.default_rng(0)
    base = rng.random(10_000) < 0.88
    cand = base.copy()
    flip_down = np.flatnonzero(base)[:20]
    flip_up = np.flatnonzero(~base)[:17]
    cand[flip_down], cand[flip_up] = False, True
    verdict = stats.compare_paired(cand, base)
    assert verdict["verdict"] == "tie" and verdict["difference"] == pytest.approx(-3 / 10_000)
    assert verdict["ci_low"] < 0 < verdict["ci_high"]


def test_a_real_win_is_better_and_a_real_loss_is_worse():
    rng = np.random.default_rng(1)
    base = rng.random(10_000) < 0.86
    cand = base.copy()
    cand[np.flatnonzero(~base)[:150]] = True  # QAT wins back 150 images ...
    cand[np.flatnonzero(base)[:40]] = False  # ... and loses 40
    assert stats.compare_paired(cand, base)["verdict"] == "better"
    assert stats.compare_paired(base, cand)["verdict"] == "worse"


def test_false_alarm_rate_of_the_tie_verdict_stays_near_alpha():
    """Two equally good models that disagree on 2% of samples: "better"/"worse" at most ~alpha of the time."""
    rng = np.random.default_rng(2)
    alarms = 0
    for _ in range(400):
        base = rng.random(2000) < 0.85
        cand = base.copy()
        disagree = rng.random(2000) < 0.02  # on these exactly one of the two is right, each with probability 1/2
        coin = rng.random(int(disagree.sum())) < 0.5
        base[disagree], cand[disagree] = coin, ~coin
        alarms += stats.compare_paired(cand, base)["verdict"] != "tie"
    assert alarms / 400 <= 0.03


def test_drop_exceeds_only_when_the_whole_interval_is_past_the_margin():
    ref = np.ones(10_000, bool)
    at_margin = ref.copy()
    at_margin[:50] = False  # a 0.5-point drop: exactly the margin, never "exceeds"
    result = stats.drop_exceeds(at_margin, ref, 0.005)
    assert result["drop"] == pytest.approx(0.005) and not result["exceeds"] and not result["within"]
    far = ref.copy()
    far[:200] = False  # 2 points
    assert stats.drop_exceeds(far, ref, 0.005)["exceeds"]
    small = ref.copy()
    small[:5] = False
    assert stats.drop_exceeds(small, ref, 0.005)["within"]


@pytest.mark.parametrize("p", [0.005, 0.025, 0.5, 0.9, 0.995])
def test_normal_quantile(p):
    # Phi(z) by erf, inverted
    z = stats._normal_quantile(p)
    assert 0.5 * (1 + math.erf(z / math.sqrt(2))) == pytest.approx(p, abs=1e-8)


def test_paired_outcomes_must_have_the_same_samples():
    with pytest.raises(ValueError, match="same samples"):
        stats.mcnemar(np.ones(3, bool), np.ones(4, bool))


def test_paired_mean_difference_interval_covers_a_known_shift():
    import numpy as np

    from edgekd.stats import paired_mean_difference

    rng = np.random.default_rng(0)
    baseline = rng.normal(3.0, 1.0, 4000)
    result = paired_mean_difference(baseline + 0.05 + rng.normal(0, 0.1, 4000), baseline, alpha=0.01)
    assert result["items"] == 4000 and result["ci_low"] < 0.05 < result["ci_high"]
    assert result["ci_low"] > 0  # a real shift of half a standard deviation of the paired noise is detected
