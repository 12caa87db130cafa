"""A Hugging Face causal LM as an ONNX decoder with past/present key/values, attention written either as
onnxruntime's fused GroupQueryAttention contrib op ("gqa") or as transformers' own attention in standard ONNX ops
("standard", any ONNX runtime).

Why "gqa": the standard export spells each layer's attention out as some 20 nodes (concatenation of past and new
keys/values, repeat of the grouped key/value heads, transposes, score MatMul, mask Add, Softmax, value MatMul). On
SmolLM2-135M an onnxruntime profile of an int4 decode step spent a third of the step outside the weight MatMuls, in
those nodes (README, "Causal LMs"). GroupQueryAttention does the concatenation, the grouped heads and the causal
softmax in one kernel, as onnxruntime-genai's models do.

Interface (both kinds): (input_ids[1, s], position_ids[1, s], past_key_i[1, kv_heads, p, d], past_value_i ...) ->
(logits[1, s, vocab], present_key_i[1, kv_heads, p + s, d], present_value_i ...), p = 0 for the first call.
"""

from __future__ import annotations

ATTENTIONS = ("gqa", "standard")
_NO_MASK = "edgekd_onnx_gqa"  # an attention name with no mask function: transformers then builds no causal mask


def gqa_reference(q, k, v, past_k, past_v, num_heads: int, kv_heads: int, scale: float):
    """What com.microsoft GroupQueryAttention computes (past and present not sharing a buffer), in PyTorch: q [b, s,
    heads * d], k/v [b, s, kv_heads * d], past [b, kv_heads, p, d] -> (out [b, s, heads * d], present key/value
    [b, kv_heads, p + s, d]); causal, query i sees the past and new tokens up to i."""
    import torch

    b, s, _ = q.shape
    d = past_k.shape[-1]
    keys = torch.cat([past_k, k.view(b, s, kv_heads, d).transpose(1, 2)], 2)
    values = torch.cat([past_v, v.view(b, s, kv_heads, d).transpose(1, 2)], 2)
    p = past_k.shape[2]
    mask = torch.ones(s, p + s, dtype=torch.bool).tril(p)
    groups = num_heads // kv_heads
    out = torch.nn.functional.scaled_dot_product_attention(
        q.view(b, s, num_heads, d).transpose(1, 2), keys.repeat_interleave(groups, 1),
        values.repeat_interleave(groups, 1), attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(b, s, -1), keys, values


def group_query_attention(q, k, v, past_k, past_v, num_heads: int, kv_heads: int, scale: float):
    """gqa_reference in eager PyTorch; the com.microsoft node under torch.onnx.export (torch.onnx.ops), with the
    sequence lengths it wants derived from the shapes (total = p + s for every row of the batch)."""
    import torch

    if not torch.onnx.is_in_onnx_export():
        return gqa_reference(q, k, v, past_k, past_v, num_heads, kv_heads, scale)
    b, s, d = q.shape[0], q.shape[1], past_k.shape[3]
    total = past_k.shape[2] + s
    seqlens_k = torch.full((b,), total - 1, dtype=torch.int32)  # index of each row's last token
    present = [b, kv_heads, total, d]
    return torch.onnx.ops.symbolic_multi_out(
        "com.microsoft::GroupQueryAttention",
        [q, k, v, past_k, past_v, seqlens_k, torch.tensor(total, dtype=torch.int32)],
        {"num_heads": num_heads, "kv_num_heads": kv_heads, "scale": float(scale)},
        dtypes=[q.dtype, q.dtype, q.dtype], shapes=[q.shape, present, present], version=1)


def _gqa_forward(attn, rope):
    """Attention module forward: projections (separate or fused qkv_proj), rotary on [b, s, heads, d], then one
    GroupQueryAttention over past + new; present keys/values go to the cache object."""
    from .models import rotary_qkv

    def forward(hidden_states, position_embeddings=None, attention_mask=None, past_key_values=None, **kwargs):
        b, s, _ = hidden_states.shape
        q, k, v = rotary_qkv(attn, rope, hidden_states, position_embeddings)
        heads, kv_heads = q.shape[2], k.shape[2]
        past_k, past_v = past_key_values.past[2 * attn.layer_idx], past_key_values.past[2 * attn.layer_idx + 1]
        out, key, value = group_query_attention(q.reshape(b, s, -1), k.reshape(b, s, -1), v.reshape(b, s, -1),
                                                past_k, past_v, heads, kv_heads, attn.scaling)
        past_key_values.present[attn.layer_idx] = (key, value)
        return attn.o_proj(out), None

    return forward


def build_onnx_decoder(model, attention: str = "gqa"):
    """The module torch.onnx.export traces (edgekd/llm/export.py export_onnx_fp32); `model` is changed in place for
    "gqa". Raises EdgekdError (key llm.onnx_attention) for models GroupQueryAttention does not compute exactly here:
    attention other than standard rotary, sliding windows, logit soft-capping."""
    import torch
    from transformers import AttentionInterface, DynamicCache

    from edgekd.errors import EdgekdError

    from .models import kv_shape, rotary_attention_modules, sliding_windows, use_attention_implementation

    layers, _, _ = kv_shape(model.config)
    if attention not in ATTENTIONS:
        raise EdgekdError(f"unknown ONNX attention {attention!r}", key="llm.onnx_attention",
                          hint=f"allowed: {', '.join(ATTENTIONS)}")
    if attention == "gqa":
        modules = rotary_attention_modules(model)
        windows = sliding_windows(model)
        reason = ("its attention modules are not standard rotary ones" if not modules else
                  "sliding-window attention" if windows else
                  "attention logit soft-capping" if getattr(model.config, "attn_logit_softcapping", None) else None)
        if reason:
            raise EdgekdError(f"onnxruntime GroupQueryAttention export: {reason}", key="llm.onnx_attention",
                              hint="set llm.onnx_attention: standard (transformers' attention in standard ONNX ops)")
        AttentionInterface.register(_NO_MASK, lambda *a, **k: None)
        use_attention_implementation(model, _NO_MASK)
        for module, rope in modules:
            module.forward = _gqa_forward(module, rope)

    class PastPresent:
        """past_key_values for the gqa forward: the graph's past inputs in, each layer's present out. Not a
        transformers Cache: mask creation then takes its no-mask path."""

        def __init__(self, past):
            self.past, self.present = past, [None] * layers

        def get_seq_length(self, layer_idx: int = 0):
            return self.past[0].shape[2]

    class WithPast(torch.nn.Module):
        """Flat tensors in and out so ONNX sees past/present key/values as graph inputs/outputs."""

        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, position_ids, *past):
            if attention == "gqa":
                cache = PastPresent(past)
                out = self.lm(input_ids=input_ids, position_ids=position_ids, past_key_values=cache, use_cache=True)
                return (out.logits, *[t for layer in cache.present for t in layer])
            cache = DynamicCache(config=self.lm.config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.lm(input_ids=input_ids, position_ids=position_ids, past_key_values=cache, use_cache=True)
            return (out.logits, *[t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)])

    return WithPast(model).eval()
