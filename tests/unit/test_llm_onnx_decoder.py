"""The ONNX decoder (src/edgekd/llm/onnx_decoder.py): onnxruntime's GroupQueryAttention node computes what
transformers computes (grouped heads, a growing past, prefill after a past), the standard-op export still does, and
models the fused node cannot compute exactly are refused with the recipe key to change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ..llm_support import tiny_qwen2


def _nodes(path):
    import onnx

    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


@pytest.mark.parametrize("attention", ["gqa", "standard"])
def test_both_attentions_match_transformers_in_onnxruntime(attention, tmp_path):
    from edgekd.llm.decode import onnx_session, torch_session
    from edgekd.llm.export import export_onnx_fp32

    torch.set_num_threads(1)
    model = tiny_qwen2(initializer_range=0.2)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    path = tmp_path / f"{attention}.onnx"
    details = export_onnx_fp32(model, path, max_seq_len=64, attention=attention)
    ops = _nodes(path)
    assert ops.count("GroupQueryAttention") == (2 if attention == "gqa" else 0)
    assert ("Softmax" in ops) == (attention == "standard")
    assert ("GroupQueryAttention" in details["attention"]) == (attention == "gqa")
    # the caller's model is left as it was (the export changes a copy)
    assert "forward" not in vars(model.model.layers[0].self_attn)
    assert model.config._attn_implementation != "edgekd_onnx_gqa"
    ref, art = torch_session(model, 64), onnx_session(path, 64)
    prompt = [5, 17, 42, 7, 99, 3]
    np.testing.assert_allclose(art.feed(prompt), ref.feed(prompt), atol=1e-4)
    for token in (12, 250):
        np.testing.assert_allclose(art.feed([token]), ref.feed([token]), atol=1e-4)
    np.testing.assert_allclose(art.feed([1, 2, 3]), ref.feed([1, 2, 3]), atol=1e-4)  # a prefill after a past


def test_gqa_reference_is_causal_over_past_and_new_tokens():
    """Query i sees the p past tokens and new tokens 0..i: changing a later new token changes no earlier output."""
    from edgekd.llm.onnx_decoder import gqa_reference

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 4, 64, generator=g), torch.randn(1, 4, 32, generator=g), torch.randn(1, 4, 32, generator=g)
    past = torch.randn(1, 2, 3, 16, generator=g), torch.randn(1, 2, 3, 16, generator=g)
    out, keys, values = gqa_reference(q, k, v, *past, 4, 2, 0.25)
    assert keys.shape == values.shape == (1, 2, 7, 16) and torch.equal(keys[:, :, :3], past[0])
    k2, v2 = k.clone(), v.clone()
    k2[:, 3], v2[:, 3] = 9.0, 9.0
    out2, _, _ = gqa_reference(q, k2, v2, *past, 4, 2, 0.25)
    assert torch.equal(out2[:, :3], out[:, :3]) and not torch.equal(out2[:, 3], out[:, 3])


def test_models_gqa_cannot_compute_are_refused_with_the_key(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from edgekd.errors import EdgekdError
    from edgekd.llm.export import export_onnx_fp32

    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, use_sliding_window=True, sliding_window=16, max_window_layers=0)
    with pytest.raises(EdgekdError, match="sliding-window") as err:
        export_onnx_fp32(Qwen2ForCausalLM(cfg).eval(), tmp_path / "sw.onnx", 32)
    assert err.value.key == "llm.onnx_attention" and "standard" in err.value.hint
    with pytest.raises(EdgekdError, match="allowed: gqa, standard"):
        export_onnx_fp32(tiny_qwen2(), tmp_path / "x.onnx", 32, attention="flash")
    assert not list(tmp_path.iterdir())  # nothing half written
