"""The decoder module edgekd exports to .pte (src/edgekd/llm/pte_decoder.py: ExecuTorch's update_cache and
custom_sdpa kernels under a transformers model) computes what the model computes with transformers' own cache, in
eager PyTorch: prefill, one-token steps, grouped-query heads, and a restart at position 0 over a dirty cache; both
the direct [b, s, heads, d] attention forward and transformers' forward with the registered attention function."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ..llm_support import tiny_qwen2


@pytest.mark.parametrize("direct", [True, False])
def test_decoder_matches_transformers_cache_and_restarts_at_zero(direct):
    from edgekd.llm.decode import torch_session
    from edgekd.llm.pte_decoder import build_decoder

    model = tiny_qwen2(initializer_range=0.2)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    ref = torch_session(model, 32)
    decoder, how = build_decoder(copy.deepcopy(model), 32, direct=direct)
    assert how.startswith("direct: 2 ") == direct

    def feed(ids, start):
        with torch.no_grad():
            return decoder(torch.tensor([ids]), torch.arange(start, start + len(ids)))[0].numpy()

    prompt, other = [5, 17, 42, 7, 99, 3], [200, 11, 64, 8]
    np.testing.assert_allclose(feed(prompt, 0), ref.feed(prompt), atol=1e-4)
    for i, token in enumerate([12, 250, 1]):
        np.testing.assert_allclose(feed([token], len(prompt) + i), ref.feed([token]), atol=1e-4)
    ref.reset()
    np.testing.assert_allclose(feed(other, 0), ref.feed(other), atol=1e-4)  # old entries beyond 4 are not read
    np.testing.assert_allclose(feed([9], len(other)), ref.feed([9]), atol=1e-4)


def test_sliding_window_shorter_than_the_cache_is_refused():
    """The kernels attend causally over the whole cache: a sliding-window model is exact only up to its window."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from edgekd.errors import EdgekdError
    from edgekd.llm.pte_decoder import build_decoder

    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, use_sliding_window=True, sliding_window=16, max_window_layers=0)
    model = Qwen2ForCausalLM(cfg).eval()
    with pytest.raises(EdgekdError, match="window 16") as err:
        build_decoder(model, 64)
    assert err.value.key == "llm.max_seq_len"
    build_decoder(Qwen2ForCausalLM(cfg).eval(), 16)  # within the window: exact, accepted


def test_fused_projections_compute_what_the_separate_ones_do():
    """q/k/v and gate/up merged into one Linear each (biases included: Qwen2's q/k/v have them) give the decoder
    the same logits as transformers' own cache; the fused module is what the direct forward runs."""
    from edgekd.llm.decode import torch_session
    from edgekd.llm.fuse import fuse_projections
    from edgekd.llm.pte_decoder import build_decoder

    model = tiny_qwen2(initializer_range=0.2)
    ref = torch_session(model, 32)
    fused = copy.deepcopy(model)
    assert fuse_projections(fused) == {"qkv": 2, "gate_up": 2}
    attn = fused.model.layers[0].self_attn
    assert not hasattr(attn, "q_proj") and attn.qkv_proj.bias is not None
    assert attn.qkv_proj.out_features == 64 + 2 * 32  # 4 query heads, 2 key/value heads of 16
    with pytest.raises(RuntimeError, match="direct"):
        build_decoder(copy.deepcopy(fused), 32, direct=False)
    decoder, how = build_decoder(fused, 32)
    assert how.startswith("direct: 2 ")
    prompt = [5, 17, 42, 7, 99, 3]
    with torch.no_grad():
        np.testing.assert_allclose(decoder(torch.tensor([prompt]), torch.arange(6))[0].numpy(), ref.feed(prompt),
                                   atol=1e-4)
        np.testing.assert_allclose(decoder(torch.tensor([[12]]), torch.arange(6, 7))[0].numpy(), ref.feed([12]),
                                   atol=1e-4)
