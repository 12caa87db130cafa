"""The TensorRT Q/DQ ONNX of tiny models built from configs: symmetric PT2E -> Q/DQ ONNX with dynamic axes ->
readiness lint + `polygraphy check lint` clean -> onnxruntime matches the converted PT2E model (not only fp32: the
int8 error of the model itself is not an export error). And `edgekd export --profile jetson-orin` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

from edgekd.config.schema import Profile
from edgekd.context import ModelBundle
from edgekd.export.qdq_onnx import export_qdq_onnx
from edgekd.runtime.onnx_checks import ort_parity
from edgekd.export.tensorrt import lint_shapes, optimization_shapes, quantization_export_shapes, tensorrt_dynamic_axes
from edgekd.quant import pt2e
from edgekd.quant.pt2e import drop_unrepresentable_observers
from tests.conftest import DIGITS_RECIPE, ROOT, write_recipe

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # each test takes 20-50 s on 2 busy cores

PROFILE = Profile(name="jetson-test", backend="tensorrt", batch_sizes=[1, 4],
                  tensorrt={"shapes": {n: {"min": [1, 4], "opt": [1, 12], "max": [4, 32]}
                                       for n in ("input_ids", "attention_mask")}})


class TinyCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.nn.functional.pad(x, (0, 1, 0, 1))  # EfficientNet's "same" padding: folded into the Conv
        x = torch.nn.functional.relu6(self.c2(x))
        return self.fc(x.mean((2, 3)))


class TinyBert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64)
        config._attn_implementation = "eager"  # as edgekd loads MiniLM: an additive finfo.min mask
        self.bert = BertModel(config)

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.mean(1)


def _quantize_and_export(bundle: ModelBundle, samples, path):
    shapes, examples = quantization_export_shapes(bundle, PROFILE)
    prepared = pt2e.prepare(bundle.module.eval(), examples, pt2e.make_quantizer("tensorrt"), dynamic_shapes=shapes)
    pt2e.calibrate(prepared, samples)
    kept_float = drop_unrepresentable_observers(prepared)
    converted = pt2e.convert(prepared)
    details = export_qdq_onnx(converted, bundle.example_inputs, path, input_names=bundle.input_names,
                              output_names=bundle.output_names, dynamic_axes=tensorrt_dynamic_axes(bundle, PROFILE),
                              shapes=lint_shapes(optimization_shapes(bundle, PROFILE)), polygraphy=True)
    details["kept_float"] = kept_float
    return converted, details


def _check_qdq(path, details):
    lint = details["lint"]
    assert lint["ok"] and lint["errors"] == 0 and lint["warnings"] == 0, lint
    assert "polygraphy check lint" in lint["checks_run"]
    assert any("0 failing" in n for n in lint["notes"]), lint["notes"]
    model = onnx.load(str(path))
    assert details["quantize_linear"] > 0 and details["dequantize_linear"] > 0
    for node in model.graph.node:  # symmetric: every zero point is an int8 zero
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zp = next(i for i in model.graph.initializer if i.name == node.input[2])
            assert onnx.numpy_helper.to_array(zp).dtype.name == "int8"
            assert not onnx.numpy_helper.to_array(zp).any()
    assert details["dynamic_axes_dropped"] == {}


def test_tiny_cnn_qdq_onnx(tmp_path):
    torch.manual_seed(0)
    bundle = ModelBundle("cnn", "image-classification", TinyCnn(), (torch.randn(1, 3, 16, 16),), ["image"],
                         ["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    samples = [(torch.randn(1, 3, 16, 16),) for _ in range(8)]
    path = tmp_path / "cnn.int8.onnx"
    converted, details = _quantize_and_export(bundle, samples, path)
    _check_qdq(path, details)
    assert details["dynamic_axes"] == {"image": {0: "batch"}}
    assert details["rewrite_counts"].get("fold_pad_into_conv") == 1
    parity = ort_parity(converted, path, [(torch.randn(3, 3, 16, 16),) for _ in range(4)])  # batch 3: dynamic
    assert parity["exact"]["cosine_min"] >= 0.99, parity
    assert parity["exact"]["top1_agreement"] == 1.0


def test_tiny_bert_qdq_onnx_with_dynamic_sequence(tmp_path):
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (1, 12))
    bundle = ModelBundle("bert", "sentence-embedding", TinyBert(), (ids, torch.ones_like(ids)),
                         ["input_ids", "attention_mask"], ["embedding"],
                         dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}})
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[:, 9:] = 0  # padded: the additive mask holds finfo.min, which no int8 scale can carry
    samples = [(torch.randint(0, 100, (1, 12)), mask) for _ in range(8)]
    path = tmp_path / "bert.int8.onnx"
    converted, details = _quantize_and_export(bundle, samples, path)
    _check_qdq(path, details)
    assert details["kept_float"], "the mask tensors must stay in float"
    with torch.no_grad():  # the int8 model itself stays close to fp32 (it collapses when the mask is quantized)
        a, b = bundle.module(*samples[0]), converted(*samples[0])
    assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.95
    assert details["dynamic_axes"] == {"input_ids": {0: "batch", 1: "dim1"}, "attention_mask": {0: "batch", 1: "dim1"}}
    other = [(torch.randint(0, 100, (2, 20)), torch.ones(2, 20, dtype=torch.long)) for _ in range(3)]  # new shape
    other.append(samples[0])  # padded
    parity = ort_parity(converted, path, other)
    assert parity["exact"]["cosine_min"] >= 0.99, parity


def test_export_jetson_orin_end_to_end(tmp_path):
    """`edgekd export --profile jetson-orin` on the digits CNN: lint-clean Q/DQ ONNX, trtexec.sh, and the manifest
    says plainly that no engine was built or timed (TensorRT is not installed here)."""
    recipe = write_recipe(tmp_path, DIGITS_RECIPE)
    proc = subprocess.run([str(Path(sys.executable).with_name("edgekd")), "export", "--profile", "jetson-orin", "--recipe",
                           str(recipe), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "out" / "digits_smoke"
    manifest = json.loads((folder / "manifest.json").read_text())
    (qdq,) = [a for a in manifest["artifacts"] if a["runtime"] == "onnxruntime" and a["precision"] != "fp32"]
    assert qdq["details"]["lint"]["ok"] and qdq["details"]["lint"]["by_rule"] == {}
    trt = qdq["details"]["tensorrt"]
    assert trt["engine_built"] is False and trt["engine_timed"] is False
    assert "NOT built and NOT timed" in trt["reason"]
    assert trt["onnxruntime_vs_pt2e"]["exact"]["cosine_min"] >= 0.99
    script = (folder / "trtexec.sh").read_text()
    assert f"--onnx={qdq['name']}" in script and "--int8" in script and "--maxShapes=image:8x1x8x8" in script
    (trt_row,) = [a for a in manifest["artifacts"] if a["runtime"] == "tensorrt"]
    assert trt_row["parity"]["status"] == "not run"
    assert "NOT built and NOT timed" in (folder / "report.md").read_text()
