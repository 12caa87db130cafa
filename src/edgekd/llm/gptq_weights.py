"""GPTQ-rounded 4-bit weights of a causal LM's Linears, from their inputs over calibration text, for both artifacts.

Two uses: the lm_head (`llm.lm_head_bits: 4`) and, for checkpoints with no grid to keep, every projection
(`llm.int4_grid: gptq`). Why: round-to-nearest minimizes each weight's error, GPTQ the layer's output error
(edgekd/quant/gptq.py). Measured on SmolLM2-135M (perplexity on 512 tokens of Pride and Prejudice, fp32 18.62):
the lm_head alone at 4 bits 20.31 round-to-nearest, 18.77 GPTQ (int8 18.66); every projection at 4 bits (weights
only, fp32 lm_head) 27.53 round-to-nearest, 21.08 GPTQ. Each layer's second moment comes from the fp32 model's own
inputs (not re-collected after the layers before it are rounded: one pass, minutes on a CPU). The calibration text is
a different novel from the perplexity corpus (config: llm.calibration_corpus must differ from llm.corpus).

The quantized modules are named as in the loaded model; the exporters merge q/k/v and gate/up first
(edgekd/llm/fuse.py), and `group_quant_of` gives a merged module the row-concatenation of its parts' codes.
"""

from __future__ import annotations

import time

import numpy as np

from edgekd.config.schema import LlmConfig
from edgekd.errors import EdgekdError
from edgekd.quant.gptq import GroupQuant, gptq

WINDOW = 255  # tokens per forward pass, as perplexity windows (edgekd/llm/decode.py)


def second_moments(model, tokens: list[int], names: list[str], window: int = WINDOW) -> dict[str, np.ndarray]:
    """{Linear name: E[x x^T] of its inputs} over `tokens`, fed in windows through the fp32 model (no cache)."""
    import torch

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def record(mod, args, out):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[name] = sums[name] + x.T @ x if name in sums else x.T @ x
            counts[name] = counts.get(name, 0) + len(x)
        return record

    hooks = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            for start in range(0, len(tokens) - 1, window):
                model(input_ids=torch.tensor([tokens[start:start + window]]))
    finally:
        for h in hooks:
            h.remove()
    return {n: (sums[n] / counts[n]).numpy() for n in names}


def projection_names(model) -> list[str]:
    """Every nn.Linear but the lm_head: what `llm.int4_grid: gptq` rounds."""
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]


def gptq_weights(model, tokenizer, cfg: LlmConfig, names: list[str]) -> tuple[dict[str, GroupQuant], dict]:
    """({name: 4-bit GroupQuant in groups of llm.group_size}, what was done for the report) for the named Linears."""
    from .corpus import corpus_tokens

    for name in names:
        k = model.get_submodule(name).weight.shape[1]
        if k % cfg.group_size:
            raise EdgekdError(f"{name}'s input size {k} is not a multiple of the group size {cfg.group_size}",
                              key="llm.group_size", hint="choose a group size dividing the hidden size")
    t0 = time.time()
    tokens = corpus_tokens(tokenizer, cfg.calibration_corpus, cfg.calibration_tokens)
    moments = second_moments(model, tokens, names)
    quants = {n: gptq(model.get_submodule(n).weight.detach().float().numpy(), moments.pop(n), bits=4,
                      group=cfg.group_size, damp=cfg.gptq_damp) for n in names}
    ratio = [q.proxy_error / q.proxy_error_rtn for q in quants.values() if q.proxy_error_rtn > 0]
    return quants, {"what": f"4-bit symmetric, group {cfg.group_size}, GPTQ-rounded (damp {cfg.gptq_damp}) on "
                            f"{len(tokens)} tokens of {cfg.calibration_corpus}",
                    "layers": len(quants),
                    "proxy_error": {n: {"gptq": q.proxy_error, "round_to_nearest": q.proxy_error_rtn}
                                    for n, q in quants.items()},
                    "median_error_vs_round_to_nearest": float(np.median(ratio)) if ratio else None,
                    "seconds": round(time.time() - t0, 1)}


def gptq_lm_head(model, tokenizer, cfg: LlmConfig) -> tuple[GroupQuant, dict]:
    """The lm_head's 4-bit GPTQ rounding (`llm.lm_head_bits: 4`) and what was done."""
    quants, how = gptq_weights(model, tokenizer, cfg, ["lm_head"])
    return quants["lm_head"], how


def group_quant_of(module: str, quants: dict[str, GroupQuant]) -> GroupQuant | None:
    """The GroupQuant of `module`, or of a merged projection the concatenation of its parts' (rows in order, as
    edgekd/llm/fuse.py concatenates the weights); None when it or a part has none."""
    if module in quants:
        return quants[module]
    from .fused_names import part_names

    parts = [quants.get(p) for p in part_names(module) or []]
    if not parts or any(p is None for p in parts):
        return None
    return GroupQuant(np.concatenate([p.codes for p in parts]), np.concatenate([p.scales for p in parts]),
                      parts[0].bits, parts[0].group, float(np.mean([p.proxy_error for p in parts])),
                      float(np.mean([p.proxy_error_rtn for p in parts])))


def quant_for(module: str, quants: dict[str, GroupQuant], lm_head_bits: int | None) -> GroupQuant | None:
    """What an export writes for `module` from `quants`: group_quant_of, except the lm_head, which takes GPTQ's 4-bit
    weights only when the format's lm_head is 4-bit (an 8-bit head keeps its own grid). Refuses a 4-bit lm_head
    that `quants` has no rounding for."""
    if module != "lm_head":
        return group_quant_of(module, quants)
    if lm_head_bits == 4 and "lm_head" not in quants:
        raise EdgekdError("a 4-bit lm_head needs its GPTQ rounding (edgekd.llm.gptq_weights.gptq_lm_head)",
                          key="llm.lm_head_bits")
    return quants["lm_head"] if lm_head_bits == 4 else None


def set_torchao_weights(model, quants: dict[str, GroupQuant], lm_head_bits: int | None) -> int:
    """Put GPTQ's codes and scales into the int4 weights torchao's quantize_ gave `model`'s Linears (quant_for);
    returns how many were set."""
    import torch

    done = 0
    for name, mod in model.named_modules():
        quant = quant_for(name, quants, lm_head_bits) if type(mod) is torch.nn.Linear else None
        if quant is not None:
            set_group_quant(mod.weight, quant)
            done += 1
    return done


def set_group_quant(weight, quant) -> None:
    """Put `quant`'s codes and scales into torchao's symmetric int4 weight tensor (IntxUnpackedToInt8Tensor, zero
    points 0) in place: the weights GPTQ chose instead of the config's round-to-nearest."""
    import torch

    if tuple(weight.qdata.shape) != quant.codes.shape or tuple(weight.block_size) != (1, quant.group):
        raise EdgekdError(f"GPTQ weight {quant.codes.shape} group {quant.group} does not match the quantized "
                          f"{tuple(weight.qdata.shape)} with blocks {tuple(weight.block_size)}", key="llm.group_size")
    with torch.no_grad():
        weight.qdata.copy_(torch.from_numpy(quant.codes))
        weight.scale.copy_(torch.from_numpy(quant.scales).to(weight.scale.dtype))
        weight.zero_point.zero_()
