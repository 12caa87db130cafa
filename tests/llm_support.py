"""The tiny random Qwen2 the LLM tests build from a config (2 layers, hidden 64, vocab 256, tied embedding)."""

from __future__ import annotations

import torch


def tiny_qwen2(seed: int = 0, initializer_range: float = 0.02):
    """`initializer_range` above the default 0.02 gives confident next-token distributions (a random model at 0.02
    is almost uniform) and layers that matter to the output."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, initializer_range=initializer_range)
    return Qwen2ForCausalLM(cfg).eval()
