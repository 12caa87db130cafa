"""Which grid each weight of a GGUF-sourced model already lies on, so re-quantization can keep it.

A GGUF file stores each tensor in one type (SmolLM2-135M-Instruct.Q4_1.gguf: every attention and MLP projection Q4_1,
the tied token embedding Q8_0, norms F32). Dequantizing it to fp32 (edgekd.llm.models.convert_gguf) keeps the
values exactly, so a re-quantizer that picks the same block size and grid kind reproduces them (edgekd.quant.nbits);
any other grid rounds a second time.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

# GGUF tensor type -> (bits, block, edgekd.quant.nbits scheme) that reproduces it in MatMulNBits.
ALIGNED = {"Q4_1": (4, 32, "affine-min"), "Q8_0": (8, 32, "symmetric")}

# Hugging Face Llama/Qwen2 module -> GGUF tensor (llama.cpp's names).
_HF_TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}


def gguf_tensor_types(path: Path) -> dict[str, str]:
    """{GGUF tensor name: type name ('Q4_1', 'Q8_0', 'F32', ...)} read with the gguf package."""
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def gguf_type(module: str, types: dict[str, str]) -> tuple[str | None, str | None]:
    """(GGUF tensor name(s), type) of HF `module`'s weight; a fused projection has its parts' type when they all
    share one (rows are concatenated, so each row keeps its block grid), else None."""
    from .fused_names import part_names

    parts = part_names(module)
    if parts:
        names = [gguf_name(part, types) for part in parts]
        kinds = {types.get(n) for n in names}
        return "+".join(n for n in names if n), (kinds.pop() if len(kinds) == 1 else None)
    name = gguf_name(module, types)
    return name, types.get(name) if name else None


def gguf_name(module: str, types: dict[str, str]) -> str | None:
    """The GGUF tensor holding the weight of HF `module` ('model.layers.3.mlp.down_proj' -> 'blk.3.ffn_down.weight';
    'lm_head' -> 'output.weight', or 'token_embd.weight' when the file ties them)."""
    if module == "lm_head":
        return "output.weight" if "output.weight" in types else "token_embd.weight"
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", module)
    if m and m.group(2) in _HF_TO_GGUF:
        return f"blk.{m.group(1)}.{_HF_TO_GGUF[m.group(2)]}.weight"
    return None


def source_grids(modules: dict[str, str], gguf_path: Path | None, block: int, default_scheme: str,
                 lm_head_bits: int | None) -> tuple[dict, dict]:
    """({ONNX node: (bits, block, scheme)}, {ONNX node: why}) for `modules` ({ONNX node: HF module}).

    With a GGUF source, each weight takes the grid ALIGNED gives its type; a type with no aligned grid, or no GGUF,
    takes 4 bits in `block` with `default_scheme`. The lm_head is quantized only when `lm_head_bits` is set (its
    4-bit rounding costs the most perplexity; 8 bits on a Q8_0 source is exact).
    """
    types = gguf_tensor_types(gguf_path) if gguf_path else {}
    plan, why = {}, {}
    for node, module in modules.items():
        is_head = module == "lm_head"
        if is_head and not lm_head_bits:
            continue
        name, kind = gguf_type(module, types) if types else (None, None)
        bits = lm_head_bits if is_head else 4
        if kind in ALIGNED and ALIGNED[kind][0] == bits:  # a Q8_0 projection in an int4 file: 4 bits, said so
            plan[node] = ALIGNED[kind]
            why[node] = f"GGUF {name} is {kind}: same grid ({ALIGNED[kind][2]}, {ALIGNED[kind][0]} bits, block 32)"
        else:
            plan[node] = (bits, block, default_scheme if bits == 4 else "symmetric")
            why[node] = (f"GGUF {name} is {kind}: no aligned MatMulNBits grid" if kind else
                         "no GGUF source type") + f"; {bits}-bit {plan[node][2]}, block {block}"
    return plan, why


def linear_types(model, gguf_path: Path) -> dict[str, str]:
    """{Linear module name: GGUF type of its weight} for the Linears the GGUF file names."""
    import torch

    types = gguf_tensor_types(gguf_path)
    out = {}
    for name, mod in model.named_modules():
        gname = gguf_name(name, types) if isinstance(mod, torch.nn.Linear) else None
        if gname in types:
            out[name] = types[gname]
    return out


def split_block_offsets(model, names: list[str], block: int = 32) -> dict[str, float]:
    """Rewrite each named Linear (weights on a Q4_1 grid, w = d * q + m per block) in place as
    BlockOffsetLinear: weight w - r with r = m + 8 d per block, which lies exactly on the symmetric int4 grid
    d * (q - 8), q - 8 in -8..7, that XNNPACK's 4-bit groups hold (scales only, no zero point: ExecuTorch's
    PerChannelGroupQuant); r comes back as blocksum(x) @ r^T. torchao's SYMMETRIC_NO_CLIPPING_ERR picks scale
    max(-8d / -8, 7d / 7) = d for such a block, so the weights survive 8da4w exactly. Returns {name: max |w' - the
    symmetric grid|} (0 up to fp32 rounding when the source is Q4_1): the error of the int4 part; the constants are
    exact in fp32 and within half an int8 step of each row's largest when the scheme quantizes them."""
    import torch

    errors = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        lin = getattr(parent, child)
        w = lin.weight.detach()
        n, k = w.shape
        wb = w.reshape(n, k // block, block)
        lo, hi = wb.amin(-1), wb.amax(-1)
        d = (hi - lo) / 15
        r = lo + 8 * d
        sym = wb - r[..., None]
        safe = torch.where(d == 0, torch.ones_like(d), d)[..., None]
        errors[name] = float((sym - torch.clamp(torch.round(sym / safe), -8, 7) * safe).abs().max())
        lin.weight = torch.nn.Parameter(sym.reshape(n, k).contiguous(), requires_grad=False)
        setattr(parent, child, BlockOffsetLinear(lin, r.contiguous(), block))
    return errors


@functools.cache
def _block_offset_linear():
    import torch

    class _BlockOffsetLinear(torch.nn.Module):
        """linear(x) + blocksum(x) @ offsets^T: a Linear whose weight had one constant removed per block of inputs.
        The offsets are a Linear of their own, marked `edgekd_block_offsets`, so the 8da4w scheme
        (edgekd/llm/scheme.py) gives them their own precision instead of the 4-bit groups."""

        def __init__(self, linear, offsets, block: int):
            super().__init__()
            self.linear, self.block = linear, block
            self.offsets = torch.nn.Linear(offsets.shape[1], offsets.shape[0], bias=False)
            self.offsets.weight = torch.nn.Parameter(offsets, requires_grad=False)
            self.offsets.edgekd_block_offsets = True

        def forward(self, x):
            return self.linear(x) + self.offsets(x.unflatten(-1, (-1, self.block)).sum(-1))

    return _BlockOffsetLinear


def BlockOffsetLinear(linear, offsets, block: int):  # noqa: N802 - torch is imported lazily (rule 8)
    return _block_offset_linear()(linear, offsets, block)
