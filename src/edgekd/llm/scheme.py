"""The 8da4w scheme as data: which torchao config applies to which modules, built in one place.

The .pte export applies these configs with torchao's `quantize_` (llm/export.py quantize_8da4w) and QAT-KD wraps the
same configs in `QATConfig` (llm/qat.py prepare_fake_quant), as torchao derives QAT from the PTQ config: the weights
QAT trains are fake-quantized exactly as the export quantizes them (tests/unit/test_llm_qat_kd.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Rule:
    kind: str                               # linear, lm_head, embedding
    config: object                          # a torchao PTQ config
    applies: Callable[[object, str], bool]  # (module, fully qualified name) -> bool, exact module types
    description: str


def embedding_group(hidden: int, group_size: int) -> int:
    """nn.Embedding groups: group_size if it divides the hidden size, else one group per row."""
    return group_size if hidden % group_size == 0 else hidden


def rules_8da4w(hidden_size: int, group_size: int, embedding_quant: str = "int8", lm_head_bits: int | None = None,
                mapping=None, block_offsets: str = "int8", hqq: bool = False) -> list[Rule]:
    """int8 dynamic per-token activations with int4 weights per group on every nn.Linear (the lm_head at int8 per
    output channel with `lm_head_bits` 8: XNNPACK's groups are 4-bit only; its own 4-bit rule with 4, whose codes
    GPTQ sets), weight-only nn.Embedding. `mapping`:
    torchao's MappingType for the int4 scales (SYMMETRIC unless a source grid asks otherwise). `block_offsets`:
    the precision of a source grid's per-block constants (edgekd.llm.gguf_source BlockOffsetLinear.offsets).
    `hqq`: int4 scales by torchao's HQQ scale-only instead of absmax (symmetric mapping only)."""
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, MappingType
    from torchao.quantization.granularity import PerAxis, PerGroup

    mapping = mapping or MappingType.SYMMETRIC
    separate_head = lm_head_bits in (4, 8)

    def is_offsets(mod) -> bool:
        return getattr(mod, "edgekd_block_offsets", False)

    extra = {}
    if hqq:
        from torchao.quantization.quantize_.workflows.intx.intx_choose_qparams_algorithm import (
            IntxChooseQParamsAlgorithm,
        )

        extra["intx_choose_qparams_algorithm"] = IntxChooseQParamsAlgorithm.HQQ_SCALE_ONLY
    scales = "HQQ scale-only" if hqq else mapping.name.lower()
    rules = [Rule("linear", Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int4, weight_granularity=PerGroup(group_size), weight_mapping_type=mapping, **extra),
        lambda mod, fqn: type(mod) is nn.Linear and not (separate_head and fqn == "lm_head") and not is_offsets(mod),
        f"8da4w (int8 dynamic activations, int4 weights, group {group_size}, {scales} scales)")]
    if lm_head_bits == 8:
        rules.append(Rule("lm_head", Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int8, weight_granularity=PerAxis(0)),
            lambda mod, fqn: type(mod) is nn.Linear and fqn == "lm_head",
            "8da8w (int8 dynamic activations, int8 weights per output channel)"))
    elif lm_head_bits == 4:  # its codes and scales are GPTQ's, set after quantize_ (llm/gptq_weights.py)
        rules.append(Rule("lm_head", Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(group_size),
            weight_mapping_type=MappingType.SYMMETRIC),
            lambda mod, fqn: type(mod) is nn.Linear and fqn == "lm_head",
            f"8da4w, group {group_size}, GPTQ-rounded codes and scales (edgekd/llm/gptq_weights.py)"))
    if block_offsets == "int8":
        rules.append(Rule("block_offsets", Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int8, weight_granularity=PerAxis(0)), lambda mod, fqn: is_offsets(mod),
            "source-grid block constants: 8da8w (int8 dynamic activations, int8 weights per output channel)"))
    if embedding_quant != "none":
        dtype = torch.int8 if embedding_quant == "int8" else torch.int4
        group = embedding_group(hidden_size, group_size)
        rules.append(Rule("embedding", IntxWeightOnlyConfig(weight_dtype=dtype, granularity=PerGroup(group)),
                          lambda mod, fqn: type(mod) is nn.Embedding,
                          f"{embedding_quant} weight-only, group {group} (quantized_decomposed.embedding_*)"))
    return rules
