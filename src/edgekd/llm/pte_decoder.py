"""A Hugging Face causal LM as an ExecuTorch decoder program that uses ExecuTorch's own LLM kernels:
`llama::update_cache` writes the new keys/values into the static cache in place and `llama::custom_sdpa` attends
over the cache up to the current position, grouped-query heads included.

Why not transformers' TorchExportableModuleForDecoderOnlyLM: its StaticCache writes with index_put and its SDPA
repeats the key/value heads for grouped-query attention (expand_copy), both outside XNNPACK. On SmolLM2-135M
(bench/results/2026-12-02-llm-peer.md) those copies, and the reshapes around them, were a third of a decode step,
and ExecuTorch's export_llm, which uses these two kernels, decoded 3-4x faster.

The program's interface stays what edgekd/llm/decode.py `pte_session` and the ExecuTorch LLM runner expect:
forward(input_ids[1, s], cache_position[s]) -> logits[1, s, vocab]; feeding position 0 starts a new sequence (the
causal kernel reads the cache only up to the current position).
"""

from __future__ import annotations

ATTENTION = "edgekd_executorch_sdpa"


def _executorch_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: query [b, heads, s, d]; key/value are the whole cache, already
    [b, heads_kv, max_len, d] views of [b, max_len, heads_kv, d] buffers (KVCache.update)."""
    import torch

    start = kwargs["edgekd_start_pos"]
    out = torch.ops.llama.custom_sdpa(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), start,
                                      None, 0.0, True, scaling)
    return out, None  # [b, s, heads, d], what transformers' attention modules reshape


def register_attention() -> None:
    """Register the attention function with transformers once; no mask function is registered, so transformers
    builds no mask for it (the kernel is causal from start_pos)."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401 - defines torch.ops.llama.*
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, _executorch_sdpa)


def _direct_forward(attn, rope):
    """A replacement forward for a standard rotary attention module (q/k/v/o projections, no q/k norms): keeps
    queries, keys and values in [b, s, heads, d], the layout both kernels take, so no transposes are emitted
    around the rotary embedding and the cache (300 XNNPACK transposes, 3.4 ms of a 17 ms SmolLM2 decode step
    on the attention-function path). Same arithmetic as transformers' forward, rotary applied on axis 2."""
    import torch

    from .models import rotary_qkv

    def forward(hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
        b, s, _ = hidden_states.shape
        q, k, v = rotary_qkv(attn, rope, hidden_states, position_embeddings)
        start = kwargs["edgekd_start_pos"]
        key_cache, value_cache = past_key_values.write(attn.layer_idx, k, v)
        out = torch.ops.llama.custom_sdpa(q, key_cache, value_cache, start, None, 0.0, True, attn.scaling)
        return attn.o_proj(out.reshape(b, s, -1)), None

    return forward


def _use_direct_forward(model) -> int:
    """Give every standard attention module the direct forward; returns how many got it (0: the model keeps
    transformers' forward with the registered attention function, e.g. attention with q/k norms)."""
    from .models import rotary_attention_modules

    modules = rotary_attention_modules(model)
    for module, rope in modules:
        module.forward = _direct_forward(module, rope)
    return len(modules)


def build_decoder(model, max_len: int, direct: bool = True):
    """The exportable module: `model` (a transformers causal LM, changed in place: the attention above) with a
    static [1, max_len, heads_kv, head_dim] key and value buffer per layer. Returns (module, how attention runs).
    `direct` False keeps transformers' attention forward for every module (the path other architectures take)."""
    import torch

    from edgekd.errors import EdgekdError

    from .models import kv_shape, sliding_windows, use_attention_implementation

    windows = sliding_windows(model)
    if windows and min(windows) < max_len:
        raise EdgekdError(f"sliding-window attention (window {min(windows)}) is shorter than the cache ({max_len})",
                          key="llm.max_seq_len", hint=f"set llm.max_seq_len <= {min(windows)}")
    if getattr(model.config, "attn_logit_softcapping", None):
        raise EdgekdError("attention logit soft-capping is not computed by ExecuTorch's custom_sdpa kernel",
                          key="llm.pte_variants", hint="export this model to ONNX only (llm.pte_variants: [])")
    register_attention()
    use_attention_implementation(model, ATTENTION)
    if not direct and any(hasattr(m, "qkv_proj") for m in model.modules()):
        raise RuntimeError("fused q/k/v projections (fuse_projections) need direct=True")
    direct_modules = _use_direct_forward(model) if direct else 0
    how = (f"direct: {direct_modules} attention modules in [b, s, heads, d]" if direct_modules else
           "transformers' attention modules with the registered attention function")
    layers, kv_heads, head_dim = kv_shape(model.config)

    class KVCache(torch.nn.Module):
        """What transformers' attention calls as past_key_values.update (and the direct forward as write); the
        buffers are the program's mutable state. Not a transformers Cache subclass: mask creation then takes its
        no-mask path."""

        def __init__(self):
            super().__init__()
            for i in range(layers):
                self.register_buffer(f"k{i}", torch.zeros(1, max_len, kv_heads, head_dim), persistent=False)
                self.register_buffer(f"v{i}", torch.zeros(1, max_len, kv_heads, head_dim), persistent=False)
            self.start = 0

        def write(self, layer_idx, key, value):
            """key/value [b, s, heads_kv, d] written at self.start; returns the layer's whole cache, same layout."""
            k, v = getattr(self, f"k{layer_idx}"), getattr(self, f"v{layer_idx}")
            torch.ops.llama.update_cache(key, k, self.start)
            torch.ops.llama.update_cache(value, v, self.start)
            return k, v

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            k, v = self.write(layer_idx, key_states.transpose(1, 2), value_states.transpose(1, 2))
            return k.transpose(1, 2), v.transpose(1, 2)

        def get_seq_length(self, layer_idx: int = 0):
            return self.start

    class Decoder(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm
            self.cache = KVCache()

        def forward(self, input_ids, cache_position):
            start = cache_position[0].item()
            torch._check(start >= 0)
            torch._check(start + input_ids.shape[1] <= max_len)
            self.cache.start = start
            out = self.lm(input_ids=input_ids, position_ids=cache_position[None], past_key_values=self.cache,
                          use_cache=True, edgekd_start_pos=start)
            return out.logits

    return Decoder(model).eval(), how
