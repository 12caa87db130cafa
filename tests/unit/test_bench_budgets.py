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


def test_host_measurement_of_a_device_budget_is_not_judged_but_kept():
    from edgekd.bench.budgets import NOT_ON_DEVICE

    budgets = Budgets(latency_p50_ms=60, peak_memory_mb=512, artifact_size_mb=8, min_speedup_vs_fp32=1.2)
    metrics = {"latency_p50_ms": 900.0, "peak_rss_mb": 100.0, "artifact_size_mb": 9.0, "speedup_vs_fp32": 0.5}
    by = {v.metric: v for v in evaluate(budgets, metrics, artifact="a.pte", runner="local", device=False)}
    # a host number never passes or fails a phone's budget, whichever side of the limit it lands on
    assert {k: v.status for k, v in by.items()} == {"latency_p50_ms": NOT_ON_DEVICE, "peak_memory_mb": NOT_ON_DEVICE,
                                                   "min_speedup_vs_fp32": NOT_ON_DEVICE, "artifact_size_mb": FAIL}
    assert by["latency_p50_ms"].value is None and by["latency_p50_ms"].host_value == 900.0
    assert by["latency_p50_ms"].measured_on == "host"
    assert "host timing 900 ms, not judged" in by["latency_p50_ms"].line()
    on_device = {v.metric: v.status for v in evaluate(budgets, metrics, device=True)}
    assert on_device == {"latency_p50_ms": FAIL, "peak_memory_mb": PASS, "min_speedup_vs_fp32": FAIL,
                         "artifact_size_mb": FAIL}


def test_which_runner_measures_on_the_device():
    from edgekd.bench.budgets import on_device

    assert on_device("ssh") and on_device("adb") and on_device("import")
    assert not on_device("local") and on_device("local", device_is_host=True)


def test_overall_verdict_is_unverified_until_every_budget_is_judged_on_the_device():
    from edgekd.bench.budgets import UNVERIFIED, missing_budgets, overall_verdict, unverified_reasons

    budgets = Budgets(latency_p50_ms=10, accuracy_drop=0.05, decode_tokens_per_s=5)
    accuracy = {"metric": "accuracy_drop", "status": PASS}
    # jetson-orin --skip bench: only verify's accuracy verdict; latency has no verdict at all (tokens/s is an LLM's)
    missing = missing_budgets(budgets, [accuracy], task="image-classification")
    assert missing == ["latency_p50_ms"] and overall_verdict([accuracy], missing) == UNVERIFIED
    assert "bench not run" in unverified_reasons([accuracy], missing)[0]
    host = {"metric": "latency_p50_ms", "status": "not measured on the device"}
    assert overall_verdict([accuracy, host]) == UNVERIFIED
    assert overall_verdict([accuracy, host, {"metric": "artifact_size_mb", "status": FAIL}]) == FAIL
    assert overall_verdict([accuracy, {"metric": "latency_p50_ms", "status": PASS}]) == PASS
    assert missing_budgets(budgets, [], task="causal-lm") == ["decode_tokens_per_s"]  # no latency or accuracy


def test_device_verdict_supersedes_host_rows_and_host_rows_never_replace_device_ones():
    from edgekd.bench.budgets import NOT_ON_DEVICE
    from edgekd.bench.core import merge_verdicts

    host = evaluate(Budgets(latency_p50_ms=10), {"latency_p50_ms": 3.0}, "a", "local", device=False)
    device = evaluate(Budgets(latency_p50_ms=10), {"latency_p50_ms": 4.0}, "a", "adb", device=True)
    merged = merge_verdicts([v.to_dict() for v in host], device, "adb")
    assert [(v["runner"], v["status"]) for v in merged] == [("adb", PASS)]
    again = merge_verdicts(merged, host, "local")  # a later host run adds no unverified row beside the device's
    assert [(v["runner"], v["status"]) for v in again] == [("adb", PASS)]
    assert host[0].status == NOT_ON_DEVICE


def test_threads_are_capped_at_usable_cores_with_a_note():
    import os

    from edgekd.bench.core import effective_threads

    usable = len(os.sched_getaffinity(0))
    threads, note = effective_threads("local", usable + 3)
    assert threads == usable and f"capped at {usable}" in note and f"asks for {usable + 3}" in note
    assert effective_threads("local", 1) == (1, "")
    assert effective_threads("ssh", usable + 3) == (usable + 3, "")  # a board's cores are not this host's


def test_speedup_is_fp32_over_quantized_of_the_same_runtime_and_format():
    from pathlib import Path

    from edgekd.bench.core import Job, Outcome, add_speedups

    def out(name, fmt, runtime, precision, p50):
        return Outcome(Job(name, Path(name), fmt, runtime, 1, precision=precision),
                       {"latency_ms": {"p50": p50}}, [])

    outs = [out("f.pte", "pte", "executorch", "fp32", 8.0), out("q.pte", "pte", "executorch", "int8", 4.0),
            out("f.onnx", "onnx", "onnxruntime", "fp32", 2.0), out("q.onnx", "onnx", "onnxruntime", "int8", 4.0)]
    add_speedups(outs)
    assert [o.result.get("speedup_vs_fp32") for o in outs] == [None, 2.0, None, 0.5]
    assert "f.pte" in outs[1].result["speedup_basis"]


def test_validate_refuses_a_speedup_budget_without_fp32_artifacts(tmp_path):
    from click.testing import CliRunner

    from edgekd.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {source: 'builtin:digits_cnn'}\ndata: {source: 'builtin:digits'}\n"
                      "stages: {ptq: {}, export: {fp32_reference_artifacts: false}}\n"
                      "budgets: {min_speedup_vs_fp32: 1.2}\n")
    result = CliRunner().invoke(main, ["validate", str(recipe)])
    assert result.exit_code == 2 and "budgets.min_speedup_vs_fp32" in result.output
    recipe.write_text(recipe.read_text().replace("false", "true"))
    assert CliRunner().invoke(main, ["validate", str(recipe)]).exit_code == 0
