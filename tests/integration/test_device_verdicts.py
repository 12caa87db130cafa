"""Verdicts judge a phone or a Jetson only by numbers measured on it (issue 16), and quantization must pay off in
speed on the device (min_speedup_vs_fp32, issue 13). The small digits recipe on all three profiles, real runtimes."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from edgekd.cli import main

from ..conftest import DIGITS_RECIPE, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BENCH = ["--set", "stages.bench.enabled=true", "--set", "stages.bench.runs=3", "--set", "stages.bench.warmup=1"]
DEVICE_BUDGETS = ("latency_p50_ms", "latency_p90_ms", "peak_memory_mb", "min_speedup_vs_fp32")


def export(tmp, profile, *args):
    recipe = write_recipe(tmp, DIGITS_RECIPE)
    return CliRunner().invoke(main, ["export", "--profile", profile, "--recipe", str(recipe), "--out",
                                     str(tmp / "out"), "--force", *args], catch_exceptions=False)


def manifest_of(tmp):
    return json.loads((tmp / "out" / "digits_smoke" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("phone")
    return tmp, export(tmp, "snapdragon865", *BENCH)


def test_host_only_run_on_a_phone_profile_never_passes_latency_or_memory(phone):
    tmp, result = phone
    assert result.exit_code == 0, result.output
    assert "verdict: unverified" in result.output and "not measured on the device" in result.output
    manifest = manifest_of(tmp)
    assert manifest["verdict"] == "unverified"
    verdicts = [v for a in manifest["artifacts"] for v in a["verdicts"]]
    device = [v for v in verdicts if v["metric"] in DEVICE_BUDGETS]
    assert {v["metric"] for v in device} >= {"latency_p50_ms", "latency_p90_ms", "peak_memory_mb"}
    assert all(v["status"] == "not measured on the device" and v["measured_on"] == "host" for v in device)
    latency = next(v for v in device if v["metric"] == "latency_p50_ms")
    assert latency["host_value"] > 0 and latency["value"] is None  # the host timing is kept, labelled, not judged
    # size and accuracy do not depend on the device: judged
    assert {v["status"] for v in verdicts if v["metric"] in ("artifact_size_mb", "accuracy_drop")} == {"pass"}
    pte = {a["precision"]: a for a in manifest["artifacts"] if a["format"] == "pte"}
    local = pte["int8"]["bench"]["local"]
    assert local["device"]["measured_on"] == "host" and local["device"]["profile"] == "snapdragon865"
    # .pte memory: the pip runtime's process holds torch, so it is not the phone runner's number
    assert local["memory_for_budget"]["value"] is None and "torch" in local["memory_for_budget"]["basis"]
    # load apart from the import of the runtime, and the cold first run apart from both
    assert local["import_ms"] > 0 and local["load_ms"] > 0 and local["first_run_ms"] > 0
    # fp32 beside int8 in each runtime, with the speedup over fp32 of the same runtime
    rows = manifest["comparison"]
    assert [r["precision"] for r in rows if r["runtime"] == "executorch"] == ["fp32 (ref)", "int8"]
    int8_row = next(r for r in rows if r["artifact"] == pte["int8"]["name"])
    assert int8_row["speedup vs fp32, same runtime"].endswith("x") and int8_row["measured on"] == "host (local)"
    assert local["speedup_vs_fp32"] > 0
    report = (tmp / "out" / "digits_smoke" / "report.md").read_text()
    assert "**Verdict: UNVERIFIED**" in report and "speedup vs fp32, same runtime" in report
    assert "PASS" not in report.split("## Budgets")[0]
    if len(os.sched_getaffinity(0)) < 4:  # the profile asks for 4 threads
        assert f"threads capped at {len(os.sched_getaffinity(0))}" in report


def test_strict_bench_of_a_host_only_phone_run_exits_1_and_rewrites_report(phone):
    tmp, _ = phone
    folder = tmp / "out" / "digits_smoke"
    (folder / "report.md").write_text("stale\n")
    args = ["bench", "--profile", "snapdragon865", "--artifacts", str(folder), "--runs", "3", "--warmup", "1",
            "--no-plots"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "verdict: unverified" in result.output
    assert (folder / "report.md").read_text().startswith("# edgekd report")
    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 1 and "not measured on the device" in strict.output


def test_jetson_export_without_a_host_exports_and_leaves_the_device_bench(tmp_path):
    result = export(tmp_path, "jetson-orin", *BENCH)
    assert result.exit_code == 0, result.output
    assert "verdict: unverified" in result.output and "verdict: pass" not in result.output
    manifest = manifest_of(tmp_path)
    assert manifest["metrics"]["bench"]["device"]["status"] == "not run"
    assert "edgekd bench --profile jetson-orin" in manifest["metrics"]["bench"]["device"]["next"]
    (trt,) = [a for a in manifest["artifacts"] if a["runtime"] == "tensorrt"]
    assert trt["bench"]["ssh"]["status"] == "not run"
    assert "latency_p50_ms" in manifest["missing_budgets"]
    skipped = export(tmp_path, "jetson-orin", "--skip", "bench")
    assert skipped.exit_code == 0 and "verdict: pass" not in skipped.output, skipped.output
    manifest = manifest_of(tmp_path)
    assert manifest["verdict"] == "unverified" and "latency_p50_ms" in manifest["missing_budgets"]
    (trt,) = [a for a in manifest["artifacts"] if a["runtime"] == "tensorrt"]  # size needs no device: judged
    assert [v["status"] for v in trt["verdicts"] if v["metric"] == "artifact_size_mb"] == ["pass"]
    strict = export(tmp_path, "jetson-orin", "--skip", "bench", "--strict")
    assert strict.exit_code == 1, strict.output


def test_min_speedup_vs_fp32_fails_on_a_profile_whose_host_is_the_device(tmp_path):
    tight = export(tmp_path, "x86-cpu", *BENCH, "--set", "budgets.min_speedup_vs_fp32=1000")
    assert tight.exit_code == 1, tight.output
    assert "min_speedup_vs_fp32" in tight.output
    manifest = manifest_of(tmp_path)
    (int8,) = [a for a in manifest["artifacts"] if a["precision"] != "fp32" and a["runtime"] == "onnxruntime"]
    (verdict,) = [v for v in int8["verdicts"] if v["metric"] == "min_speedup_vs_fp32"]
    assert verdict["status"] == "fail" and verdict["measured_on"] == "device" and verdict["unit"] == "x"
    assert verdict["value"] == pytest.approx(int8["bench"]["local"]["speedup_vs_fp32"])
    assert manifest["verdict"] == "fail"
    loose = export(tmp_path, "x86-cpu", *BENCH, "--set", "budgets.min_speedup_vs_fp32=0.000001")
    assert loose.exit_code == 0, loose.output
    assert manifest_of(tmp_path)["verdict"] == "pass"
