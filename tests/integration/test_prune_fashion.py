"""The Fashion-MNIST prune recipe (recipes/fashion_cnn/prune_kd_int8.yaml) through the real CLI, with a shorter
training budget (recipe overrides): 30% of the student's MACs removed, and the pruned + KD student and its int8
artifacts judged against the unpruned student on the same held-out test images with paired statistics
(src/edgekd/stats.py), never a bare comparison of two accuracies and never a timing."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgekd.data import fashion

from ..conftest import ROOT
from ..kd_support import export_command, export_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.heavy,
              pytest.mark.skipif(not (fashion.data_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason="dataset-fashion-mnist not installed (make system-deps)")]

RECIPE = ROOT / "recipes" / "fashion_cnn" / "prune_kd_int8.yaml"
NAME = "fashion_cnn_prune_kd_int8"
SHORTER = ["teacher.kwargs.epochs=3", "teacher.kwargs.data.train_samples=8000", "data.train_samples=8000",
           "data.eval_samples=3000", "stages.distill.epochs=4", "stages.prune.recovery.epochs=2",
           "stages.qat.epochs=1"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune_fashion")
    extra = [arg for kv in SHORTER for arg in ("--set", kv)]
    done = subprocess.run(export_command(RECIPE, tmp / "out", *extra), env=export_env(tmp), cwd=ROOT,
                          capture_output=True, text=True, timeout=3000)
    # 1 is a gate of the recipe's full budget (QAT+KD within 0.5 points of the pruned student) that this shorter
    # run may miss; what this test judges is below.
    assert done.returncode in (0, 1), (done.stdout + done.stderr)[-3000:]
    folder = tmp / "out" / NAME
    return folder, json.loads((folder / "manifest.json").read_text())


def test_prune_removes_30_percent_of_macs_and_the_graph_still_verifies(manifest):
    _, m = manifest
    prune = m["metrics"]["prune"]
    assert prune["macs_reduction"] >= 0.30 and prune["macs_after"] < 0.7 * prune["macs_before"]
    assert prune["params_after"] < prune["params_before"]
    assert m["model"]["parameters"] == prune["params_after"]
    layers = {r["layer"]: r for r in prune["layers"]}
    assert layers["classifier"]["out_after"] == 10
    for a in m["artifacts"]:
        assert a["parity"]["samples"] == 3000
        if a["precision"] == "fp32":  # the fp32 artifacts are the pruned network, exactly
            assert a["parity"]["top1_agreement"] >= 0.999, a["name"]


def test_pruned_kd_and_int8_are_paired_against_the_unpruned_student(manifest):
    _, m = manifest
    steps = {s["step"]: s for s in m["metrics"]["prune"]["steps"]}
    assert list(steps) == ["fp32 unpruned", "pruned", "pruned + KD"]
    unpruned = steps["fp32 unpruned"]["accuracy"]
    assert unpruned > 0.8  # a real student, not a degenerate one
    kd = steps["pruned + KD"]["paired_vs_unpruned"]
    print("steps:", json.dumps({k: (s["accuracy"], s["paired_vs_unpruned"]["verdict"]) for k, s in steps.items()}))
    assert kd["samples"] == 3000
    # not significantly more than 2 points below the unpruned student (one-sided 99% bound; the shipped recipe's
    # longer training is measured within 1 point, README "Pruning")
    assert kd["drop_ci_low"] <= 0.02 and kd["verdict"] in ("tie", "better", "worse")
    for a in m["artifacts"]:
        paired = a["parity"]["paired_vs_unpruned"]
        assert paired["samples"] == 3000 and paired["basis"] == "accuracy on labels"
        if a["precision"] in ("fp32", "int8"):
            assert paired["ci_high"] >= -0.02, (a["name"], paired)  # can't be shown to lose more than 2 points
