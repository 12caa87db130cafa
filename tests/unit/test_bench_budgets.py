"""Budgets against measurements: maximums, minimums, margins, and "not measured" is never a pass."""

from __future__ import annotations

import pytest

from edgekd.bench.budgets import FAIL, NOT_MEASURED, PASS, evaluate, flat_metrics, unchecked
from edgekd.config.schema import Budgets


def test_maximum_budget_pass_and_fail_with_margin():
    budgets = Budgets(latency_p50_ms=10, peak_memory_mb=100)
    ok, mem = evaluate(budgets, {"latency_p50_ms": 8.0, "peak_rss_mb": 125.0}, artifact="a", runner="local")
    assert (ok.metric, ok.status, ok.margin, ok.margin_pct) == ("latency_p50_ms", PASS, 2.0, 20.0)
    assert (mem.status, mem.margin, mem.margin_pct) == (FAIL, -25.0, -25.0)
    assert "peak_memory_mb = 125 MB, limit 100 MB (max), margin -25 MB (-25.0%)" == mem.line()


def test_minimum_budget_tokens_per_second():
    (v,) = evaluate(Budgets(decode_tokens_per_s=20), {"decode_tokens_per_s": 15.0})
    assert v.kind == "min" and v.status == FAIL and v.margin == -5.0 and v.margin_pct == pytest.approx(-25.0)
    (v,) = evaluate(Budgets(decode_tokens_per_s=20), {"decode_tokens_per_s": 30.0})
    assert v.status == PASS and v.margin == 10.0


def test_missing_measurement_is_not_measured_not_pass():
    (v,) = evaluate(Budgets(latency_p90_ms=5), {})
    assert v.status == NOT_MEASURED and v.value is None and v.margin is None
    assert "not measured" in v.line()


def test_exactly_at_the_limit_passes_and_unset_budgets_are_listed():
    (v,) = evaluate(Budgets(artifact_size_mb=2), {"artifact_size_mb": 2.0})
    assert v.status == PASS and v.margin == 0
    assert "latency_p50_ms" in unchecked(Budgets(artifact_size_mb=2))
    assert "artifact_size_mb" not in unchecked(Budgets(artifact_size_mb=2))


def test_flat_metrics_from_a_measure_result():
    bench = {"latency_ms": {"p50": 1.5, "p90": 2.5}, "peak_rss_mb": 70.0}
    m = flat_metrics(bench, size_bytes=3_000_000, parity={"accuracy_drop": 0.01})
    assert m == {"latency_p50_ms": 1.5, "latency_p90_ms": 2.5, "peak_rss_mb": 70.0, "artifact_size_mb": 3.0,
                 "accuracy_drop": 0.01}
