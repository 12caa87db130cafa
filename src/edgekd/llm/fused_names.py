"""Which modules edgekd/llm/fuse.py merges, by name: for code that maps a merged module back to its parts (the GGUF
grid of a merged weight in edgekd/llm/gguf_source.py, GPTQ codes in edgekd/llm/gptq_weights.py) without importing
the fusion itself."""

from __future__ import annotations

import re

# A merged module (by its name under a decoder layer) -> the modules whose rows it concatenates, in order.
FUSED_PARTS = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
               "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}


def part_names(module: str) -> list[str] | None:
    """'model.layers.3.self_attn.qkv_proj' -> its q/k/v modules' names; None for a module fuse_projections did not
    make."""
    m = re.fullmatch(r"(.+\.layers\.\d+)\.(.+)", module)
    return [f"{m.group(1)}.{part}" for part in FUSED_PARTS[m.group(2)]] if m and m.group(2) in FUSED_PARTS else None
