"""qat for causal LMs: quantization-aware KD that trains the weights the 8da4w .pte export quantizes.

The generic qat stage (PT2E graphs, observers, convert to int8) does not fit an LLM whose deliverable is torchao's
8da4w (int8 dynamic per-token activations, int4 symmetric per-group weights, edgekd.llm.export.quantize_8da4w): it
dispatches here for task "causal-lm". The steps:

1. Teacher: recipe.teacher's HF model if the recipe names one, else the loaded fp32 model itself, frozen: the fp32
   model teaches its quantized self.
2. Student: a copy of the fp32 model with torchao fake quantization derived from the very PTQ configs the export
   applies (QATConfig(base_config=Int8DynamicActivationIntxWeightConfig(int4, PerGroup(llm.group_size))) on every
   Linear, QATConfig(IntxWeightOnlyConfig(...)) on nn.Embedding with the export's embedding rule). torchao infers
   the fake quantizers from those configs (same groups, symmetric int4 weights, same scale rule, asymmetric int8
   per-token activations), so the forward pass in training computes what the exported model computes;
   tests/unit/test_llm_qat_kd.py checks the fake-quant logits equal quantize_8da4w's exactly.
3. train_kd with task "causal-lm": per-token KL to the teacher on windows of a novel that is not the eval one.
4. Remove the fake quantization (QATConfig(step="convert") without a base config: FakeQuantizedLinear/Embedding
   back to nn.Linear/nn.Embedding holding the trained fp32 weights, ties kept) and put that model in
   ctx.model.causal_lm.hf_model, which the existing export quantizes to 8da4w; nothing is requantized differently.
5. The untouched fp32 model goes to ctx.model.causal_lm.reference: verify compares every artifact with it,
   not with the trained weights. ctx.model.module (the generic last-position view) keeps the original too.

Perplexity of the PyTorch 8da4w model (quantize_8da4w, the export's quantization) on the verify slice is measured
before and after training and recorded in ctx.metrics["qat"] and the report, beside the artifacts' own numbers.
"""

from __future__ import annotations

import copy
import time

from torch import nn

from edgekd.context import CausalLM, Context, ModelBundle
from edgekd.errors import EdgekdError


class AllLogits(nn.Module):
    """input_ids [B, T] -> logits [B, T, vocab]: what token-level KD needs (the bundle's module gives the last only)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids):
        return self.lm(input_ids=input_ids, use_cache=False).logits


def check_groups(model, group_size: int) -> None:
    """Every Linear's in_features must split into whole groups (the export raises the same error, but only after
    training)."""
    bad = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.in_features % group_size]
    if bad:
        raise EdgekdError(f"in_features of {bad[:3]} not divisible by group_size {group_size}", key="llm.group_size",
                          hint="choose 32, 64 or 128 dividing the hidden size")


def prepare_fake_quant(model, group_size: int, embedding_quant: str = "int8", lm_head_bits: int | None = None):
    """Swap Linear/Embedding for torchao's fake-quantized versions of the export's own rules (llm/scheme.py), in
    place; parameters (and ties) are kept."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    from .scheme import rules_8da4w

    for rule in rules_8da4w(model.config.hidden_size, group_size, embedding_quant, lm_head_bits):
        quantize_(model, QATConfig(rule.config, step="prepare"), filter_fn=rule.applies)
    return model


def fake_quant_modules(model) -> list[str]:
    from torchao.quantization.qat import FakeQuantizedEmbedding, FakeQuantizedLinear

    return [n for n, m in model.named_modules() if isinstance(m, (FakeQuantizedLinear, FakeQuantizedEmbedding))]


def remove_fake_quant(model):
    """torchao's convert step without a base config: back to plain nn.Linear / nn.Embedding, trained fp32 weights."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model, QATConfig(step="convert"),
              filter_fn=lambda mod, fqn: isinstance(mod, (nn.Linear, nn.Embedding)))
    left = fake_quant_modules(model)
    if left:
        raise RuntimeError(f"fake quantization left after convert: {left[:3]}")
    return model


def teacher_model(ctx: Context, original) -> tuple[object, str]:
    """recipe.teacher's HF model (same vocabulary required), else the frozen fp32 model itself."""
    if ctx.teacher is None:
        return original, f"{ctx.model.name} fp32 (itself, frozen)"
    hf = ctx.teacher.causal_lm.hf_model if ctx.teacher.causal_lm is not None else None
    if ctx.teacher.task != "causal-lm" or hf is None:
        raise EdgekdError(f"the teacher of a causal LM must be a causal LM, got a {ctx.teacher.task!r} model",
                          file=str(ctx.recipe_path), key="teacher.source",
                          hint="hf:PATH of a Hugging Face causal LM, or no teacher (the fp32 model teaches itself)")
    ours, theirs = original.config.vocab_size, hf.config.vocab_size
    if ours != theirs:
        raise EdgekdError(f"teacher vocabulary ({theirs}) != student vocabulary ({ours})", file=str(ctx.recipe_path),
                          key="teacher.source", hint="token-level KD needs the same tokenizer")
    return hf, ctx.teacher.name


def pytorch_perplexity(model, ctx: Context) -> float:
    """Perplexity on verify's slice (llm.corpus, llm.perplexity_tokens, windows of max_seq_len - 1), same code."""
    from .corpus import corpus_tokens
    from .decode import perplexity, torch_session
    from .stages import llm_config

    cfg = llm_config(ctx)
    tokens = corpus_tokens(ctx.model.meta["tokenizer"], cfg.corpus, cfg.perplexity_tokens)
    return perplexity(torch_session(model, cfg.max_seq_len), tokens, cfg.max_seq_len - 1)["perplexity"]


def quantized_perplexity(model, ctx: Context) -> float:
    """Perplexity of what the 8da4w export makes of `model`, in PyTorch (torchao's quantize_8da4w)."""
    from .export import quantize_8da4w
    from .stages import llm_config

    cfg = llm_config(ctx)
    quantized, _ = quantize_8da4w(model, cfg.group_size, cfg.embedding_quant, lm_head_bits=cfg.head_bits("pte"))
    return pytorch_perplexity(quantized, ctx)


def check(ctx: Context, cfg) -> None:
    """Before anything loads: a train split is needed; a teacher is optional (the fp32 model teaches itself)."""
    if ctx.recipe.llm is not None and ctx.recipe.llm.int4_grid in ("hqq", "gptq"):
        raise EdgekdError(f"QAT-KD trains against torchao's absmax int4 scales; llm.int4_grid "
                          f"{ctx.recipe.llm.int4_grid} would export other weights than the trained ones",
                          file=str(ctx.recipe_path), key="llm.int4_grid",
                          hint="with stages.qat use int4_grid symmetric or source")
    if ctx.recipe.llm is not None and ctx.recipe.llm.head_bits("pte") == 4:
        raise EdgekdError("QAT-KD trains the lm_head against round-to-nearest int4; a GPTQ-rounded 4-bit lm_head "
                          "would export other weights than the trained ones", file=str(ctx.recipe_path),
                          key="llm.lm_head_bits", hint="with stages.qat use lm_head_bits 8 or leave it unset")
    if ctx.recipe.data.train_samples < 2:
        raise EdgekdError("QAT-KD of a causal LM needs train windows", file=str(ctx.recipe_path),
                          key="data.train_samples", hint="set data.train_samples >= 2 (windows of data.seq_len "
                                                         "tokens; austen_data takes them from Emma)")
    if ctx.recipe.teacher is not None:
        from edgekd.train.support import check_teacher_config

        check_teacher_config(ctx, "qat")


def run(ctx: Context, cfg) -> Context:
    from edgekd.train.loop import resolve_device, train_kd
    from edgekd.train.support import checkpoint_dir, record

    from .stages import llm_config

    started = time.perf_counter()
    llm = llm_config(ctx)
    lm = ctx.model.lm()
    original = lm.hf_model.eval()
    check_groups(original, llm.group_size)
    teacher, teacher_name = teacher_model(ctx, original)
    if ctx.teacher is None:
        ctx.teacher = ModelBundle(name=teacher_name, task="causal-lm", module=AllLogits(teacher),
                                  example_inputs=ctx.model.example_inputs, input_names=["input_ids"],
                                  meta={"source": "the student's own fp32 weights"},
                                  causal_lm=CausalLM(hf_model=teacher))
    device = resolve_device(cfg.device, ctx.device)

    student = prepare_fake_quant(copy.deepcopy(original), llm.group_size, llm.embedding_quant, llm.head_bits("pte"))
    student.requires_grad_(True)  # the copy inherits requires_grad from the original, which train_kd freezes
    fake_quantized = len(fake_quant_modules(student))
    # The fake-quant student's own perplexity equals quantize_8da4w's (same logits, tested), so it is not repeated.
    ppl = {"fp32_original": pytorch_perplexity(original, ctx)}
    ppl["8da4w_before"] = quantized_perplexity(original, ctx)
    if ctx.progress is not None:
        ctx.progress()

    result = train_kd(AllLogits(student), AllLogits(teacher), ctx.data.train, ctx.data.eval, cfg, task="causal-lm",
                      stage="qat", ckpt_dir=checkpoint_dir(ctx, "qat"), device=device, resume=ctx.resume,
                      example_inputs=ctx.model.example_inputs, progress=ctx.progress)
    student.to("cpu").eval()
    teacher.to("cpu")
    remove_fake_quant(student)
    ppl["fp32_trained"] = pytorch_perplexity(student, ctx)
    ppl["8da4w_after"] = quantized_perplexity(student, ctx)

    if lm.reference is None:
        lm.reference = original
    lm.hf_model = student
    _decide(ctx, llm, teacher_name, fake_quantized)
    ignored = [k for k in ("per_channel", "freeze_observers_epoch", "freeze_bn_epoch")
               if getattr(cfg, k) != type(cfg).model_fields[k].default] + (["ptq_baseline"] if cfg.ptq_baseline else [])
    if ignored:
        ctx.decide("qat", ", ".join(f"stages.qat.{k}" for k in ignored), "ignored for causal LMs",
                   "no PT2E graph (no observers, BN or per-channel choice); the PTQ baseline is the '8da4w before "
                   "QAT-KD' perplexity in the QAT-KD section")
    record(ctx, "qat", result, cfg, {
        "device": str(device), "task": "causal-lm", "scheme": "8da4w fake quantization (torchao QATConfig)",
        "group_size": llm.group_size, "embedding_quant": llm.embedding_quant, "teacher": teacher_name,
        "fake_quantized_modules": fake_quantized, "train_windows": len(ctx.data.train),
        "train_from": ctx.data.train.description, "tokens_per_window": int(ctx.data.train.inputs[0][0].shape[-1]),
        "pytorch_perplexity": ppl, "perplexity_slice": f"first {llm.perplexity_tokens} tokens of {llm.corpus}",
        "total_seconds": time.perf_counter() - started})
    ctx.report_sections["QAT-KD (causal LM, PyTorch side)"] = report_section(ctx)
    return ctx


def _decide(ctx: Context, llm, teacher_name: str, fake_quantized: int) -> None:
    ctx.decide("qat", "teacher", teacher_name, "recipe.teacher" if ctx.recipe.teacher is not None else
               "no recipe.teacher: the fp32 model teaches its 8da4w-fake-quantized copy")
    ctx.decide("qat", "fake quantization", f"{fake_quantized} modules (8da4w Linear, {llm.embedding_quant} "
               f"Embedding), removed after training", "derived by torchao from the export's PTQ configs, so the "
               "trained weights are the ones quantize_8da4w quantizes; no PT2E graph, no learned scales")
    ctx.decide("qat", "causal LM weights", "replaced by the trained fp32 weights",
               "export writes every .pte/.onnx variant from them (an fp32 variant holds the trained weights too); "
               "the model as loaded stays as verify's reference")


def report_section(ctx: Context) -> str:
    from edgekd.report.comparison import table

    q = ctx.metrics["qat"]
    p = q["pytorch_perplexity"]
    ref = p["fp32_original"]
    rows = [{"model (PyTorch)": name, "perplexity": f"{p[key]:.3f}", "vs fp32 original": f"{p[key] / ref - 1:+.1%}"}
            for name, key in (("fp32 original (teacher, verify reference)", "fp32_original"),
                              ("8da4w before QAT-KD (quantize_8da4w)", "8da4w_before"),
                              ("fp32 trained weights (no quantization)", "fp32_trained"),
                              ("8da4w after QAT-KD (quantize_8da4w)", "8da4w_after"))]
    return (f"{q['steps']} steps of batch {q['batch_size']} windows x {q['tokens_per_window']} tokens "
            f"({q['train_from']}), teacher {q['teacher']}, {q['seconds']:.0f} s of training; perplexity on the "
            f"{q['perplexity_slice']} (the verify slice, never trained on).\n\n" + table(rows))
