"""measure.py: statistics, and the script itself on a real ONNX model in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekd.bench.measure import percentile, summarize
from edgekd.bench.runner import MEASURE_SCRIPT
from tests.bench_support import mlp_onnx


def test_percentile_matches_numpy():
    values = sorted(np.random.default_rng(1).exponential(size=57).tolist())
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summary_intervals_contain_their_estimates():
    samples = np.random.default_rng(2).normal(10, 1, size=40).tolist()
    s = summarize(samples)
    assert s["mean_ci95"][0] < s["mean"] < s["mean_ci95"][1]
    assert s["median_ci95"][0] <= s["p50"] <= s["median_ci95"][1]
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert s["n"] == 40


@pytest.fixture(scope="module")
def onnx_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("measure")
    model = mlp_onnx(folder / "mlp.onnx", layers=2, width=32)
    np.savez(folder / "inputs.npz", x=np.ones((1, 32), np.float32))
    return model, folder / "inputs.npz"


def run_script(python, *args):
    return subprocess.run([python, str(MEASURE_SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_script_measures_a_real_model_pinned(onnx_case):
    model, inputs = onnx_case
    proc = run_script(sys.executable, "--artifact", model, "--runtime", "onnxruntime", "--inputs", inputs,
                      "--warmup", 2, "--runs", 7, "--threads", 1, "--cores", 0)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["runs"] == 7 and len(result["latency_ms"]["samples"]) == 7
    assert result["affinity"] == [0] and result["threads"] == 1
    assert result["inputs"] == {"x": [1, 32]}
    mem = result["memory"]
    assert mem["before_load"]["peak_rss_mb"] <= mem["after_load"]["peak_rss_mb"] <= result["peak_rss_mb"]
    assert result["model_peak_mb"] == pytest.approx(result["peak_rss_mb"] - mem["before_load"]["peak_rss_mb"],
                                                    abs=1e-3)
    assert result["load_ms"] > 0 and result["latency_ms"]["p50"] > 0
    # load (file to ready session) apart from the import of the runtime and from the cold first run
    assert result["import_ms"] > 0 and result["first_run_ms"] > 0 and "InferenceSession" in result["load_basis"]
    # onnxruntime's own process, without torch: the number a memory budget may use
    assert not result["process_imports_torch"]
    assert result["memory_for_budget"]["value"] == result["peak_rss_mb"]


def test_script_reports_missing_runtime_in_one_json_line(onnx_case, tmp_path):
    model, inputs = onnx_case
    bare = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    proc = run_script(bare / "bin" / "python", "--artifact", model, "--runtime", "onnxruntime", "--inputs", inputs)
    assert proc.returncode == 3
    (line,) = proc.stdout.strip().splitlines()
    result = json.loads(line)
    assert result["ok"] is False and "lacks numpy, onnxruntime" in result["error"]


def test_script_rejects_missing_artifact(onnx_case, tmp_path):
    _, inputs = onnx_case
    proc = run_script(sys.executable, "--artifact", tmp_path / "nope.onnx", "--runtime", "onnxruntime",
                      "--inputs", inputs)
    assert proc.returncode == 3 and "artifact not found" in json.loads(proc.stdout)["error"]
