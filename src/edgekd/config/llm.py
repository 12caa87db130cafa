"""The `llm:` section of a recipe: causal-LM settings (edgekd.llm), kept beside schema.py for size."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from .strict import Strict

# The texts edgekd.llm.corpus reads (Jane Austen's novels, Debian r-cran-janeaustenr).
Corpus = Literal["austen:prideprejudice", "austen:emma", "austen:persuasion", "austen:sensesensibility",
                 "austen:mansfieldpark", "austen:northangerabbey"]


class LmHeadBits(Strict):
    """The lm_head's bits per format (`llm.lm_head_bits: 8` sets both)."""

    pte: Literal[4, 8] | None = None
    onnx: Literal[4, 8] | None = None


def _both_formats(value):
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if value not in (4, 8):
        raise ValueError(f"{value} is not 4 or 8 (or per format: {{pte: 4, onnx: 8}})")
    return {"pte": value, "onnx": value}


class LlmConfig(Strict):
    """Causal-LM settings (edgekd.llm): KV-cache length, 8da4w group size, ONNX variants, decoding and perplexity."""

    max_seq_len: int = Field(default=256, ge=16, le=8192)  # static KV-cache length of the .pte; ONNX past limit
    max_new_tokens: int = Field(default=32, ge=1)  # greedy tokens per prompt (verify) and decode steps (bench)
    group_size: Literal[32, 64, 128, 256] = 32  # int4 weight group (8da4w) and MatMulNBits block size
    embedding_quant: Literal["none", "int8", "int4"] = "int8"  # nn.Embedding weight-only quantization in the .pte
    prompts: list[str] | None = None  # None: the first sentences of the corpus
    corpus: Corpus = "austen:prideprejudice"
    perplexity_tokens: int = Field(default=512, ge=16)  # the first N tokens of the corpus, so numbers compare
    prefill_tokens: int = Field(default=64, ge=1)  # prompt length for prefill tokens/s
    onnx_variants: list[Literal["fp32", "int4", "int8"]] = Field(default_factory=lambda: ["fp32", "int4", "int8"])
    pte_variants: list[Literal["fp32", "8da4w"]] = Field(default_factory=lambda: ["fp32", "8da4w"])
    lora_adapter: str | None = None  # a peft adapter folder merged into the weights before export
    # int4 weights of .pte and ONNX: "source" keeps a GGUF source's grid (edgekd.llm.gguf_source), "symmetric" the
    # quantizers' own symmetric rounding (torchao 8da4w, onnxruntime MatMulNBitsQuantizer), "hqq" symmetric codes
    # with HQQ-optimized scales in both (edgekd.quant.nbits; for checkpoints with no grid to keep), "gptq" symmetric
    # codes and scales rounded by GPTQ on calibration text in both (edgekd/llm/gptq_weights.py; better than hqq)
    int4_grid: Literal["source", "symmetric", "hqq", "gptq"] = "source"
    onnx_accuracy_level: Literal[0, 1, 2, 3, 4] = 4  # MatMulNBits: 4 = int8 activations per block, 0 = fp32
    # lm_head, one value for both formats or per format ({pte: 4, onnx: 8}): 8 = int8 (.pte per channel, ONNX per
    # block of 32, sharing the embedding's codes); 4 = 4-bit in groups of group_size, rounded by GPTQ on calibration
    # text (edgekd/llm/gptq_weights.py); None = 4-bit round-to-nearest like every Linear in the .pte, fp32 in the ONNX
    lm_head_bits: Annotated[LmHeadBits | None, BeforeValidator(_both_formats)] = None
    # GPTQ of a 4-bit lm_head: its inputs' second moment over the first calibration_tokens of calibration_corpus (a
    # different novel from `corpus`, so perplexity stays a held-out measurement), damped by gptq_damp x mean(diag)
    calibration_corpus: Corpus = "austen:emma"
    calibration_tokens: int = Field(default=16384, ge=256)
    gptq_damp: float = Field(default=0.03, gt=0, le=1)
    # .pte with a Q4_1 source grid: each block's constant m + 8d, applied as blocksum(x) @ r^T beside the symmetric
    # int4 kernel, in "int8" (per output channel, int8 dynamic activations: 10 MB smaller and faster on SmolLM2,
    # PyTorch perplexity 19.09 vs 19.11) or "fp32" (the source's weights reproduced exactly)
    block_offsets: Literal["int8", "fp32"] = "int8"
    # ONNX attention (edgekd.llm.onnx_decoder): "gqa" = onnxruntime's GroupQueryAttention contrib op (one fused node
    # per layer, onnxruntime only); "standard" = transformers' attention in standard ONNX ops (any ONNX runtime)
    onnx_attention: Literal["gqa", "standard"] = "gqa"

    def head_bits(self, fmt: str) -> int | None:
        """The lm_head's bits in `fmt` ("pte" or "onnx")."""
        return getattr(self.lm_head_bits, fmt) if self.lm_head_bits is not None else None

    @model_validator(mode="after")
    def _calibration_held_out(self):
        gptq = 4 in (self.head_bits("pte"), self.head_bits("onnx")) or self.int4_grid == "gptq"
        if gptq and self.calibration_corpus == self.corpus:
            raise ValueError(f"llm.calibration_corpus {self.calibration_corpus} is llm.corpus: GPTQ would round the "
                             "weights on the text their perplexity is measured on; choose another novel")
        return self
