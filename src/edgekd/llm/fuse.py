"""Merged projections for export: q/k/v as one Linear, gate/up as one Linear, in place on a transformers model.

Why: a decode step (one token) is a row of small GEMVs, each with its own dispatch, dynamic activation quantization
and, with a source grid, block sum and block-constant GEMM (edgekd/llm/gguf_source.py). The merged projections read
the same input once. Both exporters use it: the .pte (edgekd/llm/export.py quantize_8da4w, before quantizing) and
the GroupQueryAttention ONNX (export_onnx_fp32, on the fp32 model; edgekd/llm/gguf_source.py gguf_type maps the
merged weights back to their GGUF tensors for the int4 grid).
"""

from __future__ import annotations


def _concat_linears(linears):
    """One module computing torch.cat([m(x) for m in linears], -1): nn.Linear, or a source grid's
    BlockOffsetLinear (edgekd/llm/gguf_source.py) whose int4 part and block constants are concatenated alike, so one
    block sum serves all. None when the modules differ in kind, bias or block. Rows are concatenated: per-row
    int4 groups and per-row int8 scales quantize them as before, so the fusion changes no weight."""
    import torch

    from .gguf_source import BlockOffsetLinear

    def plain(m):
        return type(m) is torch.nn.Linear

    def cat_linear(ms):
        out = torch.nn.Linear(ms[0].in_features, sum(m.out_features for m in ms), bias=ms[0].bias is not None)
        out.weight = torch.nn.Parameter(torch.cat([m.weight.detach() for m in ms]), requires_grad=False)
        if ms[0].bias is not None:
            out.bias = torch.nn.Parameter(torch.cat([m.bias.detach() for m in ms]), requires_grad=False)
        return out

    if len({m.bias is None for m in linears if plain(m)}) > 1:
        return None
    if all(plain(m) for m in linears):
        return cat_linear(linears)
    inner = [getattr(m, "linear", None) for m in linears]
    if any(i is None or not plain(i) for i in inner) or len({m.block for m in linears}) > 1 or \
            len({i.bias is None for i in inner}) > 1:
        return None
    offsets = torch.cat([m.offsets.weight.detach() for m in linears])
    return BlockOffsetLinear(cat_linear(inner), offsets, linears[0].block)


def _gated_mlp_forward(mlp, sizes):
    def forward(x):
        gate, up = mlp.gate_up_proj(x).split(sizes, -1)
        return mlp.down_proj(mlp.act_fn(gate) * up)

    return forward


def fuse_projections(model) -> dict:
    """Merge each attention module's q/k/v projections into one `qkv_proj` and each gated MLP's gate/up into one
    `gate_up_proj`, in place: a decode step then runs 4 GEMMs per layer instead of 7, and with a source grid 4
    block sums, 4 block-constant GEMMs and 4 dynamic activation quantizations instead of 7 each (they read the same
    input). Done before quantization (edgekd/llm/export.py quantize_8da4w), it changes no weight. Attention
    modules fused here need the direct forward of build_decoder. Returns how many modules of each kind were fused."""
    from .models import rotary_attention_modules

    def rows(m):
        return m.out_features if hasattr(m, "out_features") else m.linear.out_features

    done = {"qkv": 0, "gate_up": 0}
    for attn, _ in rotary_attention_modules(model):
        parts = [getattr(attn, "q_proj", None), getattr(attn, "k_proj", None), getattr(attn, "v_proj", None)]
        fused = _concat_linears(parts) if all(p is not None for p in parts) else None
        if fused is not None:
            attn.qkv_sizes, attn.qkv_proj = [rows(p) for p in parts], fused
            del attn.q_proj, attn.k_proj, attn.v_proj
            done["qkv"] += 1
    for mlp in model.modules():
        if all(hasattr(mlp, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            fused = _concat_linears([mlp.gate_proj, mlp.up_proj])
            if fused is not None:
                sizes = [rows(mlp.gate_proj), rows(mlp.up_proj)]
                mlp.gate_up_proj = fused
                del mlp.gate_proj, mlp.up_proj
                mlp.forward = _gated_mlp_forward(mlp, sizes)
                done["gate_up"] += 1
    return done
