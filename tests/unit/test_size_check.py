"""`edgekd size check` on real artifacts: a model grown by one layer fails (exit 1) and names the grown tensors;
the baseline is written only with --update-baseline, and a failed check leaves it byte for byte as it was."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from tests.bench_support import artifacts_folder, mlp_onnx, mlp_pte

X = {"x": np.ones((1, 32), np.float32)}


def size_check(*args, env=None):
    result = CliRunner().invoke(main, ["size", "check", *map(str, args)], env=env)
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def out_with(tmp_path: Path, artifact: Path) -> Path:
    """out/tiny as export leaves it, holding `artifact` (replacing what was there)."""
    folder = tmp_path / "out" / "tiny"
    for old in folder.glob("mlp.*") if folder.exists() else []:
        old.unlink()
    artifacts_folder(folder, artifact, X)
    return tmp_path / "out"


def test_onnx_grown_by_one_layer_fails_and_names_the_grown_initializers(tmp_path):
    baseline = tmp_path / "sizes.json"
    out = out_with(tmp_path, mlp_onnx(tmp_path / "v1" / "mlp.onnx", layers=2))

    result, text = size_check("--baseline", baseline, out)
    assert result.exit_code == 2 and "baseline not found" in text and not baseline.exists()

    result, text = size_check("--baseline", baseline, out, "--update-baseline")
    assert result.exit_code == 0 and "baseline created" in text
    recorded = json.loads(baseline.read_text())["artifacts"]["tiny/mlp.onnx"]
    assert recorded["parts"]["layers.1.weight"] == 32 * 32 * 4 and recorded["groups"]["Gemm"] == 2 * (32 * 33 * 4)

    result, text = size_check("--baseline", baseline, out)
    assert result.exit_code == 0 and "ok" in text

    out = out_with(tmp_path, mlp_onnx(tmp_path / "v2" / "mlp.onnx", layers=3))
    before = baseline.read_bytes()
    summary = tmp_path / "summary.md"
    result, text = size_check("--baseline", baseline, out, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1, text
    assert "regressed" in text and "layers.2.weight 0->4096 B" in text and "layers.2.bias 0->128 B" in text
    assert "layers.0.weight" not in text.split("grown:")[1]  # unchanged tensors are not blamed
    assert "by kind: Gemm 8448 -> 12672 B" in text
    assert baseline.read_bytes() == before  # a failed check never rewrites the baseline
    assert "| tiny/mlp.onnx |" in summary.read_text() and "layers.2.weight (+4096 B)" in summary.read_text()

    result, text = size_check("--baseline", baseline, out, "--tolerance-pct", "60")
    assert result.exit_code == 0, text  # +50% is within a 60% tolerance
    result, text = size_check("--baseline", baseline, out, "--tolerance-bytes", "4000")
    assert result.exit_code == 1, text  # +4224 B is not within 4000 B

    result, text = size_check("--baseline", baseline, out, "--update-baseline")
    assert result.exit_code == 0 and "baseline updated" in text
    assert json.loads(baseline.read_text())["artifacts"]["tiny/mlp.onnx"]["parts"]["layers.2.weight"] == 4096
    result, text = size_check("--baseline", baseline, out)
    assert result.exit_code == 0, text


def test_pte_grown_by_one_layer_names_the_grown_delegate_and_weights(tmp_path):
    baseline = tmp_path / "sizes.json"
    out = out_with(tmp_path, mlp_pte(tmp_path / "v1" / "mlp.pte", layers=2))
    result, text = size_check("--baseline", baseline, out, "--update-baseline")
    assert result.exit_code == 0, text
    parts = json.loads(baseline.read_text())["artifacts"]["tiny/mlp.pte"]["parts"]
    weights = sorted((k.split(" ", 3)[3], v) for k, v in parts.items() if k.startswith("named data "))
    assert weights == [("fp32[32, 32]", 4096)] * 2 + [("fp32[32]", 128)] * 2  # 2 Linear layers in XNNPACK's data

    out = out_with(tmp_path, mlp_pte(tmp_path / "v2" / "mlp.pte", layers=3))
    before = baseline.read_bytes()
    result, text = size_check("--baseline", baseline, out)
    assert result.exit_code == 1, text
    grown = text.split("grown:")[1].splitlines()[0]  # the artifact's line (the error line repeats it)
    assert "delegate forward[0] XnnpackBackend" in grown
    # the new layer's weight and bias, named by XNNPACK's content key and labelled with dtype and shape
    assert grown.count("named data ") == 2
    assert re.search(r"named data [0-9a-f]{16} fp32\[32, 32\] 0->4096 B", grown), grown
    assert re.search(r"named data [0-9a-f]{16} fp32\[32\] 0->128 B", grown), grown
    assert "by kind: named data (delegate weights) 8448 -> 12672 B" in text
    assert baseline.read_bytes() == before


def test_bad_baseline_and_missing_outs_exit_2(tmp_path):
    out = out_with(tmp_path, mlp_onnx(tmp_path / "v1" / "mlp.onnx", layers=1))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result, text = size_check("--baseline", bad, out)
    assert result.exit_code == 2 and "baseline is not valid JSON" in text and bad.read_text() == "{not json"
    result, text = size_check("--baseline", bad, tmp_path / "nowhere")
    assert result.exit_code == 2 and "not a file or folder" in text


@pytest.mark.parametrize("flag", ["--tolerance-bytes", "--tolerance-pct"])
def test_negative_tolerance_is_refused(tmp_path, flag):
    out = out_with(tmp_path, mlp_onnx(tmp_path / "v1" / "mlp.onnx", layers=1))
    result, text = size_check("--baseline", tmp_path / "s.json", out, flag, "-1", "--update-baseline")
    assert result.exit_code == 2 and "tolerances must be >= 0" in text and not (tmp_path / "s.json").exists()


def test_baseline_keys_are_artifact_names_whatever_folder_is_checked(tmp_path):
    """Recorded from out/, checked against a copy in another folder and against the run folder itself: the same
    artifacts are compared (ok), not reported as all removed and all new."""
    baseline = tmp_path / "sizes.json"
    out = out_with(tmp_path, mlp_onnx(tmp_path / "v1" / "mlp.onnx", layers=2))
    result, text = size_check("--baseline", baseline, out, "--update-baseline")
    assert result.exit_code == 0, text
    assert list(json.loads(baseline.read_text())["artifacts"]) == ["tiny/mlp.onnx"]
    elsewhere = tmp_path / "ci" / "build-42"
    shutil.copytree(out, elsewhere)
    for folder in (elsewhere, elsewhere / "tiny", out / "tiny"):
        result, text = size_check("--baseline", baseline, folder)
        assert result.exit_code == 0, text
        assert text.split()[:2] == ["ok", "tiny/mlp.onnx:"], text
        assert "removed" not in text and "new artifact" not in text, text


def test_a_removed_artifact_fails_unless_allowed(tmp_path):
    baseline = tmp_path / "sizes.json"
    out = out_with(tmp_path, mlp_onnx(tmp_path / "v1" / "mlp.onnx", layers=2))
    artifacts_folder(out / "other", mlp_onnx(tmp_path / "v1b" / "mlp.onnx", layers=1), X, name="other")
    result, text = size_check("--baseline", baseline, out, "--update-baseline")
    assert result.exit_code == 0, text
    shutil.rmtree(out / "other")
    before = baseline.read_bytes()
    result, text = size_check("--baseline", baseline, out)
    assert result.exit_code == 1, text
    assert "removed" in text and "other/mlp.onnx: in the baseline" in text and "are gone" in text
    result, text = size_check("--baseline", baseline, out, "--allow-removed")
    assert result.exit_code == 0, text
    assert "removed" in text and "other/mlp.onnx" in text  # still printed, just not failing
    assert baseline.read_bytes() == before


def test_two_artifacts_with_one_name_are_refused(tmp_path):
    first = out_with(tmp_path, mlp_onnx(tmp_path / "v1" / "mlp.onnx", layers=1))
    second = tmp_path / "elsewhere"
    artifacts_folder(second / "tiny", mlp_onnx(tmp_path / "v2" / "mlp.onnx", layers=2), X)
    result, text = size_check("--baseline", tmp_path / "s.json", first, second, "--update-baseline")
    assert result.exit_code == 2 and "two artifacts have the name 'tiny/mlp.onnx'" in text, text
    assert not (tmp_path / "s.json").exists()
