"""onnxruntime graph passes on a dynamo-exported BERT (edgekd/export/ort_graph.py): the fused graph holds the fused op
types, its int8 quantization holds QAttention, no Add -> LayerNormalization is left for the slow session-time
SkipLayerNormalization fusion, and every file still computes what PyTorch computes, padded rows included."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgekd.backends import get as get_backend
from edgekd.config.schema import DataConfig
from edgekd.export.onnx import export_onnx
from edgekd.export.ort_graph import attention_shape, canonical_padding_mask, fuse_attention
from edgekd.models.builtin import text_bundle
from edgekd.quant.ort import ort_quantize
from tests.conftest import session_ops

PASSES = ("ort-attention-fusion", "ort-unfused-layernorm")
# the shared fixture exports a tiny BERT twice and quantizes it: about 30 s on 2 cores
SLOW = pytest.mark.slow


def _tiny_text_bundle(heads: int = 4):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=heads,
                        intermediate_size=64, max_position_embeddings=64)
    config._attn_implementation = "eager"
    return text_bundle("tiny_bert", BertModel(config).eval(), None, DataConfig(source="builtin:sentences", seq_len=16),
                       "sentence-embedding", None, "test")


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _cosines(path, bundle, rng) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = []
    for batch, seq in ((1, 9), (3, 16), (2, 40)):  # 40 > the example's 16 tokens
        ids = rng.integers(1, 100, size=(batch, seq)).astype(np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        mask[0, seq // 2:] = 0  # a padded row beside full rows
        (got,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            ref = bundle.module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        out.append(np.sum(got * ref, -1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ort_graph")
    bundle = _tiny_text_bundle()
    plain, fused = tmp / "plain.onnx", tmp / "fused.onnx"
    export_onnx(bundle.module, bundle, plain)
    details = export_onnx(bundle.module, bundle, fused, passes=PASSES)
    int8 = tmp / "fused.int8.onnx"
    ort_quantize(fused, int8, "dynamic", isa="avx512-vnni")
    return bundle, plain, fused, int8, details


def test_onnxruntime_backend_declares_the_passes():
    assert set(get_backend("onnxruntime").onnx_graph_passes) == set(PASSES)
    assert get_backend("executorch-xnnpack").onnx_graph_passes == ()
    assert get_backend("tensorrt").onnx_graph_passes == ()


@SLOW
def test_fused_graph_holds_the_fused_ops_and_computes_the_same(exported, tmp_path):
    bundle, plain, fused, int8, details = exported
    done = details["graph_passes"]
    assert done["ort-attention-fusion"]["fused"] == {"Attention": 2, "BiasGelu": 2}, done
    assert (done["ort-attention-fusion"]["num_heads"], done["ort-attention-fusion"]["hidden_size"]) == (4, 32)
    ops = _ops(fused)
    assert ops["Attention"] == 2 and ops["BiasGelu"] == 2 and ops["Softmax"] == 0 and ops["Where"] == 0, ops
    assert ops["Sum"] == ops["LayerNormalization"] == 5, ops  # every add before a LayerNormalization
    assert _ops(plain)["Softmax"] == 2  # without passes the exporter's graph is left as it was
    rng = np.random.default_rng(0)
    assert _cosines(fused, bundle, rng).min() > 0.9999
    # the int8 file quantizes the fused attention; a default session fuses no SkipLayerNormalization into it
    assert _ops(int8)["QAttention"] == 2
    ops_in_session = session_ops(int8, tmp_path)
    assert ops_in_session["SkipLayerNormalization"] == 0 and ops_in_session["LayerNormalization"] >= 5, ops_in_session
    # a random tiny BERT in int8: measured >= 0.99 (AVX-512 VNNI); the padded rows count
    assert _cosines(int8, bundle, rng).min() > 0.95


@SLOW
def test_session_fuses_skip_layernorm_without_the_pass(exported, tmp_path):
    """The pass is what keeps it out: the plain export gets onnxruntime's SkipLayerNormalization at session time."""
    _bundle, plain, *_ = exported
    assert session_ops(plain, tmp_path)["SkipLayerNormalization"] >= 4


@SLOW
def test_mask_rewrite_refuses_a_mask_that_is_not_the_padding_mask(exported):
    """A causal (or otherwise non-padding) mask is not rewritten: the check runs both masks in onnxruntime."""
    _bundle, plain, *_ = exported
    model = onnx.load(str(plain))
    assert attention_shape(model) == (4, 32)
    # a precision plan needs each Linear's own node: no fusion, and it says why
    _same, done = fuse_attention(model, keep_layer_nodes=True)
    assert "precision plan" in done["not_done"] and sum(n.op_type == "Softmax" for n in model.graph.node) == 2
    where = next(n for n in model.graph.node if n.op_type == "Where")
    # invert the condition: real tokens masked, padding attended; the constants still look like a padding mask
    model.graph.node.insert(list(model.graph.node).index(where),
                            onnx.helper.make_node("Not", [where.input[0]], ["inverted_mask"], name="invert"))
    where.input[0] = "inverted_mask"
    assert "not the padding mask" in canonical_padding_mask(model)
    assert sum(n.op_type == "Where" for n in model.graph.node) == 1  # left as it was
