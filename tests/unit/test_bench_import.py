"""`edgekd bench import --format trtexec`: a real trtexec log (tests/data, NVIDIA's cookbook) becomes the device
measurement of the TensorRT artifact: manifest, verdicts, JUnit and report.md, judged as measured on the device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from tests.bench_support import artifacts_folder, mlp_onnx, profile_copy, snapshot

DATA = Path(__file__).resolve().parents[1] / "data"
LOG = DATA / "trtexec_onnx_trt10.txt"  # Latency median 0.0386963 ms, p90 0.0480957 ms


@pytest.fixture
def folder(tmp_path):
    """An out/<name> folder of a jetson-orin export: the Q/DQ ONNX for TensorRT, as `edgekd export` records it."""
    model = mlp_onnx(tmp_path / "src" / "mlp.onnx", layers=2, width=32)
    folder = artifacts_folder(tmp_path / "out" / "tiny", model, {"x": np.ones((1, 32), np.float32)})
    manifest = json.loads((folder / "manifest.json").read_text())
    record = manifest["artifacts"][0]
    record.update(name="mlp.onnx (tensorrt)", runtime="tensorrt", precision="int8")
    manifest["model"] = {"task": "image-classification"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def run(*args):
    return CliRunner().invoke(main, ["bench", "import", *map(str, args)])


def test_trtexec_log_fills_manifest_verdicts_and_report(folder, tmp_path):
    profile = profile_copy(tmp_path, base="jetson-orin")
    result = run("--format", "trtexec", LOG, "--artifacts", folder, "--profile", profile)
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    (art,) = manifest["artifacts"]
    imported = art["bench"]["import"]
    assert imported["latency_ms"]["p50"] == pytest.approx(0.0386963)
    assert imported["device"]["measured_on"] == "device" and "NVIDIA RTX 6000 Ada" in imported["device"]["description"]
    assert imported["source"]["file"] == str(LOG.resolve()) and len(imported["source"]["sha256"]) == 64
    by_metric = {v["metric"]: v for v in art["verdicts"]}
    assert by_metric["latency_p50_ms"]["status"] == "pass" and by_metric["latency_p50_ms"]["measured_on"] == "device"
    assert by_metric["latency_p50_ms"]["value"] == pytest.approx(0.0386963)
    assert by_metric["latency_p90_ms"]["status"] == "pass"
    # trtexec reports no process memory: not measured, never a pass, and the verdict says unverified
    assert by_metric["peak_memory_mb"]["status"] == "not measured"
    assert manifest["verdict"] == "unverified" and "peak_memory_mb" in " ".join(manifest["verdict_notes"])
    report = (folder / "report.md").read_text()
    assert "**Verdict: UNVERIFIED**" in report and "device (import)" in report and "0.0387" in report
    assert (folder / "bench-import.junit.xml").is_file()
    strict = run("--format", "trtexec", LOG, "--artifacts", folder, "--profile", profile, "--strict")
    assert strict.exit_code == 1 and "peak_memory_mb" in strict.output


def test_device_log_over_budget_fails_and_supersedes_host_rows(folder, tmp_path):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"][0]["verdicts"].append(  # an earlier host run of the export: not judged
        {"metric": "latency_p50_ms", "status": "not measured on the device", "value": None, "limit": 1e-3,
         "kind": "max", "unit": "ms", "runner": "local", "measured_on": "host", "host_value": 3.0})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    profile = profile_copy(tmp_path, base="jetson-orin", latency_p50_ms=1e-3, peak_memory_mb=None)
    result = run("--format", "trtexec", LOG, "--artifacts", folder, "--profile", profile)
    assert result.exit_code == 1 and "latency_p50_ms" in result.output and "margin -" in result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = [v for v in manifest["artifacts"][0]["verdicts"] if v["metric"] == "latency_p50_ms"]
    assert [(v["status"], v["measured_on"]) for v in rows] == [("fail", "device")]
    assert manifest["verdict"] == "fail"


def test_log_without_summary_or_ambiguous_artifact_is_exit_2_and_changes_nothing(folder, tmp_path):
    profile = profile_copy(tmp_path, base="jetson-orin")
    before = snapshot(folder)
    result = run("--format", "trtexec", DATA / "trtexec_loadengine_profile_trt10.txt", "--artifacts", folder,
                 "--profile", profile)
    assert result.exit_code == 2 and "--dumpProfile" in result.output
    result = run("--format", "trtexec", LOG, "--artifacts", folder, "--profile", profile, "--artifact", "nope")
    assert result.exit_code == 2 and "no such artifact" in result.output
    assert snapshot(folder) == before


def test_executor_runner_log_is_a_device_mean_only(tmp_path):
    """executor_runner (the adb runner's device binary) prints the total of N executions: the mean is kept as a device
    measurement, the percentiles the budgets name stay not measured (never guessed), and the verdict unverified."""
    from tests.bench_support import mlp_pte

    folder = artifacts_folder(tmp_path / "out" / "tiny", mlp_pte(tmp_path / "src" / "mlp.pte"),
                              {"x": np.ones((1, 32), np.float32)})
    log = tmp_path / "phone.log"
    log.write_text("I 00:00:00.001 executorch:executor_runner.cpp:80] Model file mlp.pte is loaded.\n"
                   "I 00:00:00.250 executorch:executor_runner.cpp:230] Model executed successfully 20 time(s) in "
                   "123.4 ms.\n")
    result = run("--format", "executorch", log, "--artifacts", folder, "--profile", "snapdragon865")
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    (art,) = manifest["artifacts"]
    assert art["bench"]["import"]["latency_ms"] == {"n": 20, "mean": pytest.approx(6.17)}
    assert art["bench"]["import"]["device"]["measured_on"] == "device"
    by_metric = {v["metric"]: v["status"] for v in art["verdicts"]}
    assert by_metric["latency_p50_ms"] == "not measured" and by_metric["artifact_size_mb"] == "pass"
    assert manifest["verdict"] == "unverified"
    wrong = run("--format", "trtexec", LOG, "--artifacts", folder, "--profile", "snapdragon865")
    assert wrong.exit_code == 2 and "0 tensorrt artifacts" in wrong.output
