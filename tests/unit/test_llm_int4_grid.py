"""int4 ONNX re-quantization that keeps a GGUF source's grid (edgekd.quant.nbits, edgekd.llm.gguf_source).

The weights are built on a Q4_1 grid as llama.cpp writes it: blocks of 32 along the input dimension, w = d * q + m
with fp16 d and m, q in 0..15, each block's minimum on code 0 and maximum on code 15. The aligned re-quantization
must give those weights back through onnxruntime's MatMulNBits (error at fp32 rounding); onnxruntime's own
quantizers (symmetric, or asymmetric with an integer zero point) round them a second time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ..llm_support import tiny_qwen2


def q41_weight(n: int, k: int, rng, block: int = 32) -> np.ndarray:
    q = rng.integers(0, 16, (n, k))
    q[:, 0::block], q[:, 1::block] = 0, 15
    d = (rng.random((n, k // block)) * 0.05 + 0.005).astype(np.float16).astype(np.float32)
    m = (-rng.random((n, k // block)) * 0.4).astype(np.float16).astype(np.float32)
    return (np.repeat(d, block, 1) * q + np.repeat(m, block, 1)).astype(np.float32)


def q80_weight(n: int, k: int, rng, block: int = 32) -> np.ndarray:
    q = rng.integers(-127, 128, (n, k))
    q[:, 0::block] = 127
    d = (rng.random((n, k // block)) * 0.002 + 0.001).astype(np.float16).astype(np.float32)
    return (np.repeat(d, block, 1) * q).astype(np.float32)


def _one_matmul(w: np.ndarray):
    """x[1, s, K] @ W^T as the dynamo exporter writes a Linear: MatMul with a [K, N] initializer."""
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="lin")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None, n])],
                          [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _run(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("accuracy_level", [0, 4])
def test_affine_min_grid_gives_q4_1_weights_back_through_onnxruntime(accuracy_level):
    """Identity rows through the kernel read the effective weights; exact where onnxruntime's own quantizers are not."""
    from edgekd.quant.nbits import matmul_nbits_from_plan

    w = q41_weight(48, 96, np.random.default_rng(0))
    eye = np.eye(96, dtype=np.float32)[None]
    model = _one_matmul(w)
    report = matmul_nbits_from_plan(model, {"lin": (4, 32, "affine-min")}, accuracy_level)
    assert [n.op_type for n in model.graph.node].count("MatMulNBits") == 1
    assert report["lin"]["max_abs_error"] < 1e-6  # numpy: fp32 rounding of (max - min) / 15 only
    got = _run(model, eye)[0].T
    assert np.abs(got - w).max() < 1e-6  # measured 6e-8 (acc 0 and 4: one-hot rows quantize exactly)
    x = np.random.default_rng(1).standard_normal((1, 5, 96)).astype(np.float32)
    tol = 1e-5 if accuracy_level == 0 else 0.05  # acc 4: int8 activations per block in the kernel
    assert np.abs(_run(model, x) - x @ w.T).max() < tol * np.abs(x @ w.T).max()

    for scheme in ("symmetric", "affine-int"):  # one more rounding: what onnxruntime's quantizers can express
        other = _one_matmul(w)
        err = matmul_nbits_from_plan(other, {"lin": (4, 32, scheme)}, accuracy_level)["lin"]["max_abs_error"]
        assert np.abs(_run(other, eye)[0].T - w).max() > 1e-3 and err > 1e-3


def test_symmetric_8bit_grid_gives_q8_0_weights_back():
    from edgekd.quant.nbits import matmul_nbits_from_plan

    w = q80_weight(40, 64, np.random.default_rng(2))
    model = _one_matmul(w)
    assert matmul_nbits_from_plan(model, {"lin": (8, 32, "symmetric")}, 4)["lin"]["max_abs_error"] < 1e-7
    assert np.abs(_run(model, np.eye(64, dtype=np.float32)[None])[0].T - w).max() < 1e-7


@pytest.fixture(scope="module")
def q41_model(tmp_path_factory):
    """tiny Qwen2 whose every projection lies on a Q4_1 grid and whose tied embedding lies on a Q8_0 grid."""
    from edgekd.llm.export import export_onnx_fp32

    torch.set_num_threads(1)
    model = tiny_qwen2(0, initializer_range=0.2)
    rng = np.random.default_rng(3)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name != "lm_head":
                mod.weight.copy_(torch.from_numpy(q41_weight(*mod.weight.shape, rng)))
        emb = model.model.embed_tokens.weight
        emb.copy_(torch.from_numpy(q80_weight(*emb.shape, rng) * 50))
    folder = tmp_path_factory.mktemp("llm_int4_grid")
    export_onnx_fp32(model, folder / "fp32.onnx", max_seq_len=64)
    return model, folder


def test_aligned_int4_onnx_matches_the_fp32_onnx(q41_model):
    """The whole tiny LM: aligned grid (4-bit projections, 8-bit lm_head and embedding) gives fp32 logits back; the
    symmetric onnxruntime quantizer (the earlier int4 path) does not."""
    from edgekd.llm.decode import onnx_session
    from edgekd.llm.export import quantize_onnx_int4

    _, folder = q41_model
    details = quantize_onnx_int4(folder / "fp32.onnx", folder / "aligned.onnx", 32, "source", None,
                                 accuracy_level=0, lm_head_bits=8, embedding_bits=8)
    quantize_onnx_int4(folder / "fp32.onnx", folder / "sym.onnx", 32, "symmetric", accuracy_level=0)
    # 2 x (fused qkv, o, fused gate_up, down) + head; attention (GroupQueryAttention) has no MatMul
    assert details["MatMulNBits"] == 9 and details["MatMul_left_float"] == 0
    layers = details["layers"]
    assert layers["lm_head"]["bits"] == 8 and layers["model.layers.1.mlp.down_proj"]["scheme"] == "affine-min"
    assert details["max_abs_error_vs_source"] < 1e-5  # per-layer max |new grid - source|, in the report
    import onnx

    nbits = [n for n in onnx.load(str(folder / "aligned.onnx")).graph.node if n.op_type == "MatMulNBits"]
    assert all(len(n.input) == 3 for n in nbits)  # default zero points: onnxruntime's faster kernels, no zp input
    embedding = layers["model.embed_tokens"]  # GatherBlockQuantized reading the lm_head's 8-bit codes
    assert embedding["shares_lm_head_codes"] and embedding["max_abs_error"] < 1e-6
    from types import SimpleNamespace

    from edgekd.llm.report import grid_lines

    lines = grid_lines(SimpleNamespace(name="aligned.onnx", details=details))
    assert sum(line.startswith("| model.") or line.startswith("| lm_head") for line in lines) == len(layers) == 10
    fp32_head = quantize_onnx_int4(folder / "fp32.onnx", folder / "emb_only.onnx", 32, "source", None,
                                   accuracy_level=0, embedding_bits=8)
    assert "model.embed_tokens" not in fp32_head["layers"]  # the fp32 lm_head keeps the float table anyway
    ids = [int(t) for t in np.random.default_rng(4).integers(0, 256, 40)]
    ref = onnx_session(folder / "fp32.onnx", 64).feed(ids)
    aligned = onnx_session(folder / "aligned.onnx", 64).feed(ids)
    sym = onnx_session(folder / "sym.onnx", 64).feed(ids)
    scale = np.abs(ref).max()
    assert np.abs(aligned - ref).max() < 1e-4 * scale
    assert np.abs(sym - ref).max() > 30 * np.abs(aligned - ref).max()
    assert (folder / "aligned.onnx").stat().st_size < (folder / "fp32.onnx").stat().st_size


def write_gguf(path, types: dict[str, str]):
    """A real GGUF file (gguf package) holding tensors of the given names and types; the values do not matter."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    rng = np.random.default_rng(5)
    for name, kind in types.items():
        qtype = gguf.GGMLQuantizationType[kind]
        writer.add_tensor(name, gguf.quants.quantize(rng.standard_normal((8, 64)).astype(np.float32), qtype),
                          raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_source_grids_follow_the_gguf_tensor_types(tmp_path):
    """Types read from a real GGUF file written with the gguf package: Q4_1 -> affine-min, Q8_0 head -> 8 bits,
    a type with no aligned grid -> the default, said so."""
    from edgekd.llm.gguf_source import gguf_tensor_types, source_grids

    path = write_gguf(tmp_path / "tiny.gguf", {"blk.0.attn_q.weight": "Q4_1", "blk.0.ffn_down.weight": "Q8_0",
                                               "token_embd.weight": "Q8_0"})
    assert gguf_tensor_types(path)["blk.0.attn_q.weight"] == "Q4_1"
    modules = {"a": "model.layers.0.self_attn.q_proj", "b": "model.layers.0.mlp.down_proj", "h": "lm_head"}
    plan, why = source_grids(modules, path, 32, "affine-min", lm_head_bits=8)
    assert plan == {"a": (4, 32, "affine-min"), "b": (4, 32, "affine-min"), "h": (8, 32, "symmetric")}
    assert "Q8_0: no aligned" in why["b"] and "same grid" in why["h"]
    assert "h" not in source_grids(modules, path, 32, "affine-min", lm_head_bits=None)[0]


def test_fused_projections_take_their_parts_grid_only_when_the_parts_agree(tmp_path):
    from edgekd.llm.gguf_source import gguf_type

    types = {"blk.0.attn_q.weight": "Q4_1", "blk.0.attn_k.weight": "Q4_1", "blk.0.attn_v.weight": "Q4_1",
             "blk.0.ffn_gate.weight": "Q4_1", "blk.0.ffn_up.weight": "Q8_0"}
    name, kind = gguf_type("model.layers.0.self_attn.qkv_proj", types)
    assert kind == "Q4_1" and name == "blk.0.attn_q.weight+blk.0.attn_k.weight+blk.0.attn_v.weight"
    assert gguf_type("model.layers.0.mlp.gate_up_proj", types)[1] is None  # Q4_1 and Q8_0 rows: no single grid
    assert gguf_type("model.layers.0.self_attn.q_proj", types) == ("blk.0.attn_q.weight", "Q4_1")


def test_8da4w_keeps_the_q4_1_grid_on_xnnpack_symmetric_groups(q41_model, tmp_path):
    """The .pte's torchao 8da4w: each Q4_1 block split into a symmetric int4 group (scale d, codes q - 8) and a
    per-block constant applied beside it; the int4 weights torchao holds are the source's, exactly."""
    from torchao.quantization import quantize_  # noqa: F401 - torchao installed

    from edgekd.llm.decode import torch_session
    from edgekd.llm.export import quantize_8da4w
    from edgekd.llm.gguf_source import gguf_name

    model, _ = q41_model
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    types = {gguf_name(n, {}): "Q4_1" for n in names} | {"token_embd.weight": "Q8_0"}
    path = write_gguf(tmp_path / "q41.gguf", types)
    exact, details = quantize_8da4w(model, 32, "int8", path, lm_head_bits=8, block_offsets="fp32")
    aligned, details8 = quantize_8da4w(model, 32, "int8", path, lm_head_bits=8)  # the default: int8 constants
    plain, _ = quantize_8da4w(model, 32, "int8")
    grid = details["source_grid"]
    assert grid["q4_1_linears"] == 14 and grid["max_abs_error_vs_source"] < 1e-6
    assert "8da8w" in details["lm_head"] and "8da8w" in details8["block_offsets"]
    w = model.get_submodule("model.layers.0.mlp.down_proj").weight.detach()
    lin = exact.get_submodule("model.layers.0.mlp.down_proj")
    rebuilt = lin.linear.weight.dequantize() + lin.offsets.weight.repeat_interleave(32, 1)
    assert float((rebuilt - w).abs().max()) < 1e-6  # plain 8da4w: the second rounding below
    lin8 = aligned.get_submodule("model.layers.0.mlp.down_proj")
    offsets = lin.offsets.weight
    half_step = offsets.abs().amax(1, keepdim=True) / 127 / 2  # int8 per row, symmetric
    err8 = (lin8.linear.weight.dequantize() + lin8.offsets.weight.dequantize().repeat_interleave(32, 1) - w).abs()
    assert bool((err8 <= half_step + 1e-6).all())  # only the constants round, by at most half a step
    assert float((plain.get_submodule("model.layers.0.mlp.down_proj").weight.dequantize() - w).abs().max()) > 1e-3
    ids = [int(t) for t in np.random.default_rng(6).integers(0, 256, 30)]
    ref = torch_session(model, 64).feed(ids)
    err = lambda m: float(np.abs(torch_session(m, 64).feed(ids) - ref).mean())  # noqa: E731
    assert err(aligned) < 0.5 * err(plain)  # what is left: int8 activations, int8 embedding and lm_head


def test_fused_projections_keep_the_source_grid_and_the_8da4w_logits(q41_model, tmp_path):
    """fuse_projections after the source-grid split: q/k/v (and gate/up) share one int4 GEMM, one block sum and one
    int8 block-constant GEMM, and the quantized decoder computes what the unfused quantized model computes."""
    from edgekd.llm.decode import torch_session
    from edgekd.llm.export import quantize_8da4w
    from edgekd.llm.gguf_source import gguf_name
    from edgekd.llm.pte_decoder import build_decoder

    model, _ = q41_model
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    path = write_gguf(tmp_path / "q41.gguf", {gguf_name(n, {}): "Q4_1" for n in names} | {"token_embd.weight": "Q8_0"})
    separate, _ = quantize_8da4w(model, 32, "int8", path, lm_head_bits=8)
    fused, details = quantize_8da4w(model, 32, "int8", path, lm_head_bits=8, fuse=True)
    assert details["fused_projections"] == {"qkv": 2, "gate_up": 2}
    qkv = fused.get_submodule("model.layers.0.self_attn.qkv_proj")
    assert hasattr(qkv, "offsets") and qkv.offsets.weight.shape[0] == qkv.linear.weight.shape[0]
    q = separate.get_submodule("model.layers.0.self_attn.q_proj")
    n = q.linear.weight.shape[0]
    assert torch.equal(qkv.linear.weight.dequantize()[:n], q.linear.weight.dequantize())  # same int4 rows
    decoder, _ = build_decoder(fused, 64)
    ids = [int(t) for t in np.random.default_rng(7).integers(0, 256, 20)]
    with torch.no_grad():
        got = decoder(torch.tensor([ids]), torch.arange(len(ids)))[0].numpy()
    np.testing.assert_allclose(got, torch_session(separate, 64).feed(ids), atol=1e-3)


def test_hqq_grid_gives_the_onnx_and_the_pte_the_same_weights(q41_model):
    """llm.int4_grid hqq: the ONNX writer (edgekd.quant.nbits "hqq") and the .pte's torchao 8da4w (HQQ scale-only)
    hold the same int4 weights, with a smaller mean rounding error than absmax scales."""
    from edgekd.llm.export import quantize_8da4w, quantize_onnx_int4
    from edgekd.quant.nbits import quantize_blocks

    model, folder = q41_model
    w = model.get_submodule("model.layers.0.mlp.down_proj").weight.detach()
    pte_side, details = quantize_8da4w(model, 32, "int8", rounding="hqq")
    assert "HQQ" in details["linear"]
    pte_w = pte_side.get_submodule("model.layers.0.mlp.down_proj").weight.dequantize().numpy()
    rng = np.random.default_rng(0)
    noisy = (w + torch.from_numpy(rng.normal(0, 0.01, tuple(w.shape)).astype(np.float32))).numpy()  # off any grid
    hqq, sym = quantize_blocks(noisy, 4, 32, "hqq"), quantize_blocks(noisy, 4, 32, "symmetric")
    assert np.abs(hqq.dequantize() - noisy).mean() < np.abs(sym.dequantize() - noisy).mean()
    np.testing.assert_allclose(quantize_blocks(w.numpy(), 4, 32, "hqq").dequantize(), pte_w, atol=1e-6)
    details = quantize_onnx_int4(folder / "fp32.onnx", folder / "hqq.onnx", 32, "hqq", accuracy_level=0)
    assert "HQQ" in details["method"] and details["MatMulNBits"] == 8
    assert {layer["scheme"] for layer in details["layers"].values()} == {"hqq"}
