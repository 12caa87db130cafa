"""The quantized ONNX format follows the profile's target CPU (Profile.isa), and text ONNX keeps batch and sequence
dynamic through export and quantization (what a CPU service feeds: each sentence at its own length)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from edgekd.config.loading import load_any
from edgekd.config.schema import DataConfig
from edgekd.errors import EdgekdError
from edgekd.export.onnx import export_onnx
from edgekd.models.builtin import SentenceEmbedder, text_bundle
from edgekd.quant.ort import ISA_FORMATS, ort_quantize
from edgekd.runtime.onnx_checks import dynamic_sequence, has_static_qdq, host_runs_isa, target_runner

from ..conftest import ROOT

DTYPE = {TensorProto.UINT8: "u8", TensorProto.INT8: "s8"}


class TinyConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.dw(torch.relu(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def _fp32_conv_onnx(path):
    torch.onnx.export(TinyConvNet().eval(), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=True, opset_version=18,
                      external_data=False, input_names=["image"])
    return path


def _q_dtypes(path) -> tuple[set[str], set[str]]:
    """(activation dtypes of QuantizeLinear outputs, weight dtypes: int8 initializers feeding DequantizeLinear)."""
    model = onnx.load(str(path))
    zero_points = {i.name: i.data_type for i in model.graph.initializer}
    acts = {DTYPE[zero_points[n.input[2]]] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    inits = {i.name: i.data_type for i in model.graph.initializer if len(i.dims) >= 2}
    weights = {DTYPE[inits[n.input[0]]] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return acts, weights


@pytest.mark.parametrize("isa", sorted(ISA_FORMATS))
def test_isa_picks_the_static_qdq_types(tmp_path, isa):
    fp32 = _fp32_conv_onnx(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(0)
    calibration = [(rng.standard_normal((1, 3, 16, 16)).astype(np.float32),) for _ in range(8)]
    details = ort_quantize(fp32, tmp_path / "int8.onnx", "static", calibration, isa=isa)
    acts, weights = _q_dtypes(tmp_path / "int8.onnx")
    fmt = ISA_FORMATS[isa]
    assert acts == {fmt.activations} and weights == {fmt.weights}, (acts, weights)
    assert details["isa"] == isa and details["format"] == fmt.name and has_static_qdq(tmp_path / "int8.onnx")
    if fmt.reduce_range:  # 7-bit symmetric weights: |w| <= 64 (onnxruntime's reduce_range range)
        model = onnx.load(str(tmp_path / "int8.onnx"))
        for init in model.graph.initializer:
            if init.data_type == TensorProto.INT8 and len(init.dims) >= 2:
                values = onnx.numpy_helper.to_array(init)
                assert np.abs(values.astype(np.int32)).max() <= 64, init.name


def test_vnni_and_avx2_formats_differ_as_the_onnxruntime_guide_says():
    assert ISA_FORMATS["avx512-vnni"].reduce_range is False and ISA_FORMATS["avx2"].reduce_range is True
    assert (ISA_FORMATS["avx512-vnni"].activations, ISA_FORMATS["avx512-vnni"].weights) == ("u8", "s8")
    assert (ISA_FORMATS["arm64"].activations, ISA_FORMATS["arm64"].weights) == ("s8", "s8")


def test_shipped_x86_profile_declares_its_isa():
    assert load_any(ROOT / "device_profiles" / "x86-cpu.yaml").isa == "avx512-vnni"


def test_invalid_isa_is_rejected_with_the_allowed_values(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nbackend: onnxruntime\nisa: sse4\n")
    with pytest.raises(EdgekdError) as info:
        load_any(path)
    text = info.value.render()
    assert "isa" in text and "'sse4'" in text
    assert all(name in text for name in ISA_FORMATS), text
    with pytest.raises(EdgekdError, match="allowed: avx512-vnni"):
        ort_quantize(tmp_path / "missing.onnx", tmp_path / "out.onnx", "dynamic", isa="sse4")


def _tiny_text_bundle():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    config._attn_implementation = "eager"
    return text_bundle("tiny_bert", BertModel(config).eval(), None, DataConfig(source="builtin:sentences", seq_len=16),
                       "sentence-embedding", None, "test")


def _feed(batch, seq, rng):
    ids = rng.integers(1, 100, size=(batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[0, seq // 2:] = 0 if seq > 2 else 1  # a padded row beside full rows
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("isa", ["avx512-vnni", "avx2"])
def test_text_onnx_takes_any_batch_and_sequence_after_quantization(tmp_path, isa):
    bundle = _tiny_text_bundle()
    fp32 = tmp_path / "fp32.onnx"
    details = export_onnx(bundle.module, bundle, fp32)
    assert details["dynamic_axes"]["input_ids"] == {0: "batch", 1: "sequence"}
    int8 = tmp_path / "int8.onnx"
    ort_quantize(fp32, int8, "dynamic", isa=isa)
    assert dynamic_sequence(fp32) and dynamic_sequence(int8)
    rng = np.random.default_rng(0)
    embedder: SentenceEmbedder = bundle.module
    for path in (fp32, int8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch, seq in ((1, 9), (3, 16), (2, 40)):  # 40 > the example's 16 tokens
            feed = _feed(batch, seq, rng)
            (got,) = session.run(None, feed)
            with torch.no_grad():
                ref = embedder(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])).numpy()
            assert got.shape == (batch, 32)
            cosine = np.sum(got * ref, -1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
            # fp32: the same math; int8 dynamic on a random tiny BERT: measured >= 0.99 (AVX-512 VNNI)
            assert cosine.min() > (0.9999 if path is fp32 else 0.95), (path.name, batch, seq, cosine)
            if path is int8:  # exact int32 kernels (what verify gates on where the host lacks the isa): same file
                (exact,) = target_runner(int8)((feed["input_ids"], feed["attention_mask"]))
                exact_cos = np.sum(exact * ref, -1) / np.linalg.norm(exact, axis=-1) / np.linalg.norm(ref, axis=-1)
                assert exact.shape == got.shape and exact_cos.min() > 0.95, exact_cos


def test_host_isa_detection():
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert host_runs_isa("arm64") is not x86
    if host_runs_isa("avx512-vnni"):
        assert host_runs_isa("avx-vnni") and host_runs_isa("avx2")
