"""Paired statistics for accuracy gates: two models judged on the same samples.

Two accuracies measured on the same 10,000 images differ by a few images from kernel rounding alone (an int8
kernel on AVX2 vs AVX-512 VNNI flips near-tie samples). A gate that compares them with a bare `a >= b` flips with
the host. What carries information is the samples on which the two disagree: McNemar's exact test asks whether one
model wins them more often than a fair coin would, and the paired confidence interval of the accuracy difference
says how far apart the two can really be. Both are computed from per-sample correctness (bool arrays).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_ALPHA = 0.01  # significance level of every paired gate: a 1-in-100 false alarm, host to host


def _binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (log-space sums keep n in the tens of thousands finite)."""
    if n == 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def mcnemar(candidate_correct: np.ndarray, baseline_correct: np.ndarray) -> dict:
    """McNemar's exact test on paired outcomes: `candidate_only` samples only the candidate gets right,
    `baseline_only` the reverse; the two-sided p-value that both win discordant samples equally often."""
    cand, base = _bools(candidate_correct), _bools(baseline_correct)
    if cand.shape != base.shape:
        raise ValueError(f"paired outcomes need the same samples: {cand.shape} vs {base.shape}")
    cand_only, base_only = int((cand & ~base).sum()), int((~cand & base).sum())
    discordant = cand_only + base_only
    p = 1.0 if discordant == 0 else min(1.0, 2.0 * _binomial_tail(min(cand_only, base_only), discordant))
    return {"candidate_only": cand_only, "baseline_only": base_only, "discordant": discordant, "p_value": p}


def paired_difference(candidate_correct: np.ndarray, baseline_correct: np.ndarray,
                      alpha: float = DEFAULT_ALPHA) -> dict:
    """Accuracy difference (candidate - baseline) with its two-sided (1 - alpha) confidence interval, from the
    per-sample differences (normal approximation of their mean; the variance is that of the paired differences, so
    two models that agree almost everywhere get a narrow interval)."""
    cand, base = _bools(candidate_correct).astype(np.float64), _bools(baseline_correct).astype(np.float64)
    n = len(cand)
    diff = cand - base
    mean = float(diff.mean()) if n else 0.0
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    z = _normal_quantile(1 - alpha / 2)
    return {"difference": mean, "ci_low": mean - z * se, "ci_high": mean + z * se, "confidence": 1 - alpha,
            "samples": n}


def compare_paired(candidate_correct: np.ndarray, baseline_correct: np.ndarray, alpha: float = DEFAULT_ALPHA) -> dict:
    """The verdict of a paired comparison: "better" or "worse" only when McNemar's p < alpha, otherwise "tie"
    (a difference the samples cannot tell from noise). Carries the test and the interval for the report."""
    test = mcnemar(candidate_correct, baseline_correct)
    interval = paired_difference(candidate_correct, baseline_correct, alpha)
    if test["p_value"] < alpha:
        verdict = "better" if test["candidate_only"] > test["baseline_only"] else "worse"
    else:
        verdict = "tie"
    return {"verdict": verdict, "alpha": alpha, **test, **interval}


def drop_exceeds(candidate_correct: np.ndarray, reference_correct: np.ndarray, margin: float,
                 alpha: float = DEFAULT_ALPHA) -> dict:
    """One-sided test of "the candidate loses more than `margin` accuracy against the reference": `exceeds` is
    true only when the whole (1 - 2 alpha) interval of the drop lies above the margin, so a drop at the margin that
    noise could explain never fails, and a real loss does."""
    interval = paired_difference(reference_correct, candidate_correct, 2 * alpha)
    return {"drop": interval["difference"], "drop_ci_low": interval["ci_low"], "drop_ci_high": interval["ci_high"],
            "margin": margin, "alpha": alpha, "exceeds": interval["ci_low"] > margin,
            "within": interval["ci_high"] <= margin}


def paired_mean_difference(candidate, baseline, alpha: float = DEFAULT_ALPHA) -> dict:
    """Mean of candidate - baseline over the same items (per-token NLL of two LMs on one text) with its two-sided
    (1 - alpha) normal interval: tokens are many, so the normal approximation holds (tools/bench_llm_peer.py)."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))
    z = _normal_quantile(1 - alpha / 2)
    return {"difference": mean, "ci_low": mean - z * se, "ci_high": mean + z * se, "confidence": 1 - alpha,
            "items": len(diff)}


def _bools(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(bool).reshape(-1)


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9): no scipy needed here."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
