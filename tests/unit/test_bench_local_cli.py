"""`edgekd bench` with the local runner on a real ONNX artifact: verdicts, exit codes, manifest, JUnit, plots."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from tests.bench_support import artifacts_folder, mlp_onnx, profile_copy, snapshot


@pytest.fixture
def folder(tmp_path):
    model = mlp_onnx(tmp_path / "src" / "mlp.onnx", layers=2, width=32)
    return artifacts_folder(tmp_path / "out" / "tiny", model, {"x": np.ones((1, 32), np.float32)})


def bench(*args, env=None):
    return CliRunner().invoke(main, ["bench", *map(str, args), "--warmup", "1", "--runs", "5"], env=env)


def test_loose_budgets_pass_and_results_land_in_the_manifest(folder, tmp_path):
    profile = profile_copy(tmp_path)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = bench("--profile", profile, "--artifacts", folder, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    (art,) = manifest["artifacts"]
    local = art["bench"]["local"]
    assert local["ok"] and local["runs"] == 5 and local["peak_rss_mb"] > 0
    statuses = {v["metric"]: v["status"] for v in art["verdicts"]}
    assert statuses == {"latency_p50_ms": "pass", "latency_p90_ms": "pass", "peak_memory_mb": "pass",
                        "artifact_size_mb": "pass", "accuracy_drop": "pass"}
    # x86-cpu declares runner.device_is_host: this host's numbers are the device's and are judged
    assert local["device"] == {**local["device"], "measured_on": "device", "runner": "local"}
    assert {v["measured_on"] for v in art["verdicts"] if v["metric"].startswith("latency")} == {"device"}
    assert manifest["verdict"] == "pass" and manifest["bench_runs"]["local"]["runs"] == 5
    # JUnit: one test case per budget verdict, none failed
    suite = ET.parse(folder / "bench-local.junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    # GitHub summary appended, earlier text kept
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "| tiny_fp32_onnx | local | latency_p50_ms |" in text
    assert (folder / "plots" / "latency_local.png").stat().st_size > 1000
    assert (folder / "plots" / "size.png").stat().st_size > 1000


def test_tightened_budget_fails_with_exit_1_naming_metric_and_margin(folder, tmp_path):
    profile = profile_copy(tmp_path, latency_p50_ms=1e-6)
    result = bench("--profile", profile, "--artifacts", folder)
    assert result.exit_code == 1
    assert "latency_p50_ms" in result.output and "margin -" in result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    failed = [v for v in manifest["artifacts"][0]["verdicts"] if v["status"] == "fail"]
    assert [v["metric"] for v in failed] == ["latency_p50_ms"] and failed[0]["margin"] < 0
    assert manifest["verdict"] == "fail"
    case = [c for c in ET.parse(folder / "bench-local.junit.xml").getroot().iter("testcase")
            if c.get("name") == "latency_p50_ms"][0]
    assert "margin -" in case.find("failure").get("message")


def test_unmeasurable_budget_is_not_measured_and_strict_fails(folder, tmp_path):
    profile = profile_copy(tmp_path, decode_tokens_per_s=10)
    result = bench("--profile", profile, "--artifacts", folder)
    assert result.exit_code == 0 and "not measured" in result.output
    result = bench("--profile", profile, "--artifacts", folder, "--strict")
    assert result.exit_code == 1 and "decode_tokens_per_s" in result.output


def test_bad_inputs_exit_2_and_change_nothing(folder, tmp_path):
    profile = profile_copy(tmp_path)
    (folder / "inputs.npz").unlink()
    before = snapshot(folder)
    result = bench("--profile", profile, "--artifacts", folder)
    assert result.exit_code == 2 and "example inputs not found" in result.output
    assert snapshot(folder) == before
    result = bench("--profile", profile, "--artifacts", tmp_path / "missing")
    assert result.exit_code == 2 and "artifacts folder not found" in result.output
    result = bench("--profile", "no-such-profile", "--artifacts", folder)
    assert result.exit_code == 2 and "unknown device profile" in result.output


def test_runner_failure_leaves_the_manifest_untouched(folder, tmp_path):
    """A model the runtime rejects: exit 2, one clear line, nothing written."""
    (folder / "mlp.onnx").write_bytes(b"not an onnx model")
    before = snapshot(folder)
    result = bench("--profile", profile_copy(tmp_path), "--artifacts", folder)
    assert result.exit_code == 2 and "onnxruntime cannot load" in result.output
    assert snapshot(folder) == before
