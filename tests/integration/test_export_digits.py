"""End to end on a tiny real-data model: every artifact runs in its real runtime; output handling is safe."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.runtime import load_onnx, load_pte

from ..conftest import DIGITS_RECIPE, write_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    recipe = write_recipe(tmp, DIGITS_RECIPE)
    result = CliRunner().invoke(main, ["export", "--profile", "snapdragon865", "--recipe", str(recipe),
                                       "--out", str(tmp / "out")], catch_exceptions=False)
    return tmp, recipe, result


def test_artifacts_run_in_real_runtimes(exported):
    tmp, _, result = exported
    assert result.exit_code == 0, result.output
    folder = tmp / "out" / "digits_smoke"
    manifest = json.loads((folder / "manifest.json").read_text())
    formats = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
    assert formats == {("pte", "int8"), ("pte", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    for a in manifest["artifacts"]:
        path = folder / a["path"]
        assert path.stat().st_size == a["bytes"] and len(a["sha256"]) == 64
        assert a["parity"]["samples"] == 48
        run = load_pte(path) if a["format"] == "pte" else load_onnx(path)
        import numpy as np

        out = run((np.zeros((1, 1, 8, 8), dtype=np.float32),))
        assert out[0].shape == (1, 10)
        if a["precision"] == "fp32":
            assert a["parity"]["cosine_mean"] > 0.9999
    int8_pte = next(a for a in manifest["artifacts"] if a["format"] == "pte" and a["precision"] == "int8")
    assert int8_pte["details"]["delegated_ops"] > 0
    assert "vs_pytorch_quantized" in int8_pte["parity"]
    assert (folder / "report.md").read_text().startswith("# edgekd report")
    assert manifest["timings_s"].keys() >= {"load", "fuse", "ptq", "export", "verify"}


def test_existing_output_needs_force(exported):
    tmp, recipe, _ = exported
    folder = tmp / "out" / "digits_smoke"
    before = (folder / "manifest.json").read_text()
    again = CliRunner().invoke(main, ["export", "--profile", "snapdragon865", "--recipe", str(recipe),
                                      "--out", str(tmp / "out"), "--skip", "verify"])
    assert again.exit_code == 2 and "--force" in again.output
    assert (folder / "manifest.json").read_text() == before


def test_failed_accuracy_gate_exits_1(exported):
    tmp, recipe, _ = exported
    result = CliRunner().invoke(main, ["export", "--profile", "x86-cpu", "--recipe", str(recipe), "--out",
                                       str(tmp / "gate"), "--set", "budgets.accuracy_drop=0",
                                       "--set", "stages.verify.min_cosine=1.0"])
    assert result.exit_code == 1, result.output
    assert "min_cosine" in result.output
