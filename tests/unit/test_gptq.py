"""GPTQ rounding (edgekd/quant/gptq.py) and the 4-bit weights it gives both LLM artifacts (edgekd/llm/gptq_weights.py):
the lm_head (llm.lm_head_bits 4) and every projection (llm.int4_grid gptq)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ..llm_support import tiny_qwen2
from .test_llm_qat_kd import ByteTokenizer, llm_context, needs_corpus


def _correlated_inputs(k: int, rows: int, rng) -> np.ndarray:
    """Inputs that mostly live in a few directions (as hidden states do): an error in one feature can be made up
    by the others, which is what GPTQ's error feedback uses."""
    return rng.normal(size=(rows, 16)) @ rng.normal(size=(16, k)) + 0.1 * rng.normal(size=(rows, k))


def test_gptq_output_error_below_round_to_nearest():
    from edgekd.quant.gptq import gptq, second_moment

    rng = np.random.default_rng(0)
    w = rng.normal(size=(96, 128)).astype(np.float32)
    x = _correlated_inputs(128, 2048, rng)
    quant = gptq(w, second_moment([x[:1000], x[1000:]]), bits=4, group=32)
    assert quant.codes.dtype == np.int8 and quant.codes.min() >= -8 and quant.codes.max() <= 7
    assert quant.scales.shape == (96, 4)
    out_err = np.linalg.norm(x @ (w - quant.dequantize()).T) / np.linalg.norm(x @ w.T)
    rtn = np.clip(np.rint(w / np.repeat(quant.scales, 32, 1)), -8, 7) * np.repeat(quant.scales, 32, 1)
    rtn_err = np.linalg.norm(x @ (w - rtn).T) / np.linalg.norm(x @ w.T)
    assert out_err < 0.8 * rtn_err, (out_err, rtn_err)
    assert quant.proxy_error == pytest.approx(out_err ** 2, rel=1e-6)  # the proxy is the relative output error
    assert quant.proxy_error < quant.proxy_error_rtn


def test_gptq_keeps_a_weight_already_on_its_grid():
    """A weight whose every group spans codes -8..7 of one scale comes back exactly: no rounding error to spread."""
    from edgekd.quant.gptq import gptq, second_moment

    rng = np.random.default_rng(1)
    codes = rng.integers(-8, 8, size=(16, 64))
    codes[:, ::32], codes[:, 1::32] = -8, 7
    scales = rng.uniform(0.01, 0.1, size=(16, 2)).astype(np.float32)
    w = codes * np.repeat(scales, 32, 1)
    quant = gptq(w, second_moment([_correlated_inputs(64, 512, rng)]), bits=4, group=32)
    np.testing.assert_array_equal(quant.codes, codes)
    np.testing.assert_allclose(quant.scales, scales, rtol=1e-6)


def test_second_moment_refuses_no_inputs():
    from edgekd.quant.gptq import second_moment

    with pytest.raises(ValueError, match="no calibration inputs"):
        second_moment([])


@needs_corpus
def test_4bit_lm_head_carries_gptq_codes_into_pte_quantization_and_the_onnx(tmp_path):
    """llm.lm_head_bits 4: the same GPTQ codes and scales in torchao's int4 lm_head (the .pte's) and in the int4
    ONNX's MatMulNBits; the embedding keeps its own 8-bit table in the ONNX."""
    import onnx
    from onnx import numpy_helper

    from edgekd.config.schema import LlmConfig
    from edgekd.llm.export import export_onnx_fp32, quantize_8da4w, quantize_onnx_int4
    from edgekd.llm.gptq_weights import gptq_lm_head

    torch.set_num_threads(1)
    model = tiny_qwen2(0, initializer_range=0.2)
    cfg = LlmConfig(lm_head_bits=4, calibration_tokens=256, corpus="austen:prideprejudice")

    quant, how = gptq_lm_head(model, ByteTokenizer(), cfg)
    assert "GPTQ" in how["what"] and "austen:emma" in how["what"]
    assert how["proxy_error"]["lm_head"]["gptq"] < how["proxy_error"]["lm_head"]["round_to_nearest"]
    q, details = quantize_8da4w(model, 32, "int8", lm_head_bits=4, gptq={"lm_head": quant})
    head = q.get_submodule("lm_head").weight
    np.testing.assert_array_equal(head.qdata.numpy(), quant.codes)
    np.testing.assert_array_equal(head.scale.numpy(), quant.scales)
    assert "GPTQ" in details["lm_head"]
    assert not np.array_equal(q.get_submodule("model.embed_tokens").weight.dequantize().numpy(),
                              head.dequantize().numpy())  # untied: the embedding keeps its own 8-bit table
    with pytest.raises(Exception, match="GPTQ"):
        quantize_8da4w(model, 32, "int8", lm_head_bits=4)

    export_onnx_fp32(model, tmp_path / "fp32.onnx", max_seq_len=64)
    info = quantize_onnx_int4(tmp_path / "fp32.onnx", tmp_path / "int4.onnx", 32, "source", None, 0, 4, 8,
                              {"lm_head": quant})
    assert info["layers"]["lm_head"]["scheme"] == "gptq" and info["layers"]["lm_head"]["bits"] == 4
    graph = onnx.load(str(tmp_path / "int4.onnx")).graph
    node = next(n for n in graph.node if n.op_type == "MatMulNBits" and n.output[0] == graph.output[0].name)
    packed = numpy_helper.to_array(next(i for i in graph.initializer if i.name == node.input[1]))
    low, high = packed.reshape(256, -1) & 0x0F, packed.reshape(256, -1) >> 4
    unpacked = np.stack([low, high], -1).reshape(256, 64).astype(np.int16) - 8
    np.testing.assert_array_equal(unpacked, quant.codes)
    assert any(n.op_type == "GatherBlockQuantized" for n in graph.node)


def test_4bit_lm_head_calibration_must_be_held_out():
    from pydantic import ValidationError

    from edgekd.config.schema import LlmConfig

    with pytest.raises(ValidationError, match="calibration_corpus"):
        LlmConfig(lm_head_bits=4, corpus="austen:emma", calibration_corpus="austen:emma")
    LlmConfig(lm_head_bits=8, corpus="austen:emma", calibration_corpus="austen:emma")  # no GPTQ: nothing to hold out


def test_lm_head_bits_per_format():
    """One value for both formats, or per format: a 4-bit .pte head (smaller file) beside the ONNX's 8-bit head,
    which shares the embedding's codes (smaller there)."""
    from pydantic import ValidationError

    from edgekd.config.schema import LlmConfig

    both, split = LlmConfig(lm_head_bits=8), LlmConfig(lm_head_bits={"pte": 4, "onnx": 8})
    assert (both.head_bits("pte"), both.head_bits("onnx")) == (8, 8)
    assert (split.head_bits("pte"), split.head_bits("onnx")) == (4, 8)
    assert LlmConfig(lm_head_bits={"onnx": 8}).head_bits("pte") is None
    with pytest.raises(ValidationError, match="tflite"):
        LlmConfig(lm_head_bits={"tflite": 4})
    with pytest.raises(ValidationError, match="calibration_corpus"):
        LlmConfig(lm_head_bits={"pte": 4}, calibration_corpus="austen:prideprejudice")


@needs_corpus
def test_export_stage_rounds_a_4bit_onnx_head_with_gptq_once_and_says_so(tmp_path):
    """The causal-LM export stage (edgekd/llm/stages.py) with lm_head_bits {onnx: 4}: GPTQ runs once on the held-out
    calibration novel, the int4 ONNX's head carries it, and the decision names what was done."""
    from edgekd.llm.stages import export_llm_artifacts

    ctx = llm_context(tmp_path, train_samples=0)
    llm = type(ctx.recipe.llm).model_validate({**ctx.recipe.llm.model_dump(), "lm_head_bits": {"onnx": 4},
                                               "pte_variants": [], "onnx_variants": ["int4"],
                                               "calibration_tokens": 512})
    ctx.recipe = ctx.recipe.model_copy(update={"llm": llm})
    export_llm_artifacts(ctx)
    (art,) = ctx.artifacts
    assert art.precision == "int4" and art.details["layers"]["lm_head"]["scheme"] == "gptq"
    (decision,) = [d for d in ctx.decisions if d.subject == "lm_head"]
    assert "GPTQ" in decision.action and "austen:emma" in decision.action and "round-to-nearest" in decision.reason


def test_4bit_lm_head_refuses_a_group_that_does_not_divide_the_hidden_size():
    from edgekd.config.schema import LlmConfig
    from edgekd.errors import EdgekdError
    from edgekd.llm.gptq_weights import gptq_lm_head

    with pytest.raises(EdgekdError, match="not a multiple") as err:
        gptq_lm_head(tiny_qwen2(0), None, LlmConfig(lm_head_bits=4, group_size=128))  # hidden size 64
    assert err.value.key == "llm.group_size"


@needs_corpus
def test_int4_grid_gptq_rounds_every_projection_and_merged_ones_take_their_parts_codes(tmp_path):
    """llm.int4_grid gptq: each projection rounded once from the loaded model's inputs; the .pte's merged q/k/v
    (edgekd/llm/fuse.py) carries the row-concatenation of q's, k's and v's codes, and so does the ONNX's MatMulNBits."""
    import onnx
    from onnx import numpy_helper

    from edgekd.config.schema import LlmConfig
    from edgekd.llm.export import export_onnx_fp32, quantize_8da4w, quantize_onnx_int4
    from edgekd.llm.gptq_weights import gptq_weights, projection_names

    torch.set_num_threads(1)
    model = tiny_qwen2(0, initializer_range=0.2)
    cfg = LlmConfig(int4_grid="gptq", calibration_tokens=256)
    names = projection_names(model)
    assert len(names) == 14 and "lm_head" not in names  # 2 layers x (q, k, v, o, gate, up, down)
    quants, how = gptq_weights(model, ByteTokenizer(), cfg, names)
    assert how["layers"] == 14 and how["median_error_vs_round_to_nearest"] < 1.0
    q, details = quantize_8da4w(model, 32, "int8", fuse=True, gptq=quants)
    assert details["gptq_linears"] == 8  # 2 x (qkv, o, gate_up, down); the lm_head was not asked for
    parts = [quants[f"model.layers.0.self_attn.{p}_proj"].codes for p in "qkv"]
    np.testing.assert_array_equal(q.get_submodule("model.layers.0.self_attn.qkv_proj").weight.qdata.numpy(),
                                  np.concatenate(parts))

    export_onnx_fp32(model, tmp_path / "fp32.onnx", max_seq_len=64)
    info = quantize_onnx_int4(tmp_path / "fp32.onnx", tmp_path / "gptq.onnx", 32, "gptq", gptq=quants,
                              accuracy_level=0)
    assert {info["layers"][m]["scheme"] for m in info["layers"]} == {"gptq"} and info["MatMulNBits"] == 8
    graph = onnx.load(str(tmp_path / "gptq.onnx")).graph
    qkv = next(n for n in graph.node if n.op_type == "MatMulNBits"  # layer 0's q/k/v: the first with N = 128
               and next(a.i for a in n.attribute if a.name == "N") == sum(len(p) for p in parts))
    packed = numpy_helper.to_array(next(i for i in graph.initializer if i.name == qkv.input[1]))
    n = packed.shape[0]
    codes = np.stack([packed.reshape(n, -1) & 0x0F, packed.reshape(n, -1) >> 4], -1).reshape(n, -1).astype(int) - 8
    np.testing.assert_array_equal(codes, np.concatenate(parts))
