"""The causal-LM versions of the export, verify and bench stages (the generic stages dispatch here by task).

export: .pte per llm.pte_variants (fp32 reference, 8da4w deliverable) when the backend is executorch-xnnpack, and
        ONNX per llm.onnx_variants (fp32 reference, int4 MatMulNBits, int8 dynamic) for every backend but tensorrt.
verify: greedy decoding of real prompts vs the fp32 PyTorch model (tokens matched) and perplexity on a fixed slice of
        a real corpus, per artifact; fp32 reference perplexity in ctx.metrics["llm"]. The reference is the model as
        loaded, also after QAT-KD trained the exported weights (`reference_model`).
bench:  load time, prefill and decode tokens/s and peak memory per artifact, each in its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys

from edgekd.config.schema import LlmConfig
from edgekd.context import Artifact, Context
from edgekd.report.atomic import sha256_of


def llm_config(ctx: Context) -> LlmConfig:
    return ctx.recipe.llm or LlmConfig()


def _hf_model(ctx: Context):
    return ctx.model.lm().hf_model


def _tick(ctx: Context) -> None:
    if ctx.progress is not None:
        ctx.progress()


def _add(ctx: Context, path, fmt: str, runtime: str, precision: str, details: dict, reference: bool) -> Artifact:
    art = Artifact(name=path.name, path=path, format=fmt, runtime=runtime, precision=precision,
                   bytes=path.stat().st_size, sha256=sha256_of(path), is_reference=reference, details=details)
    ctx.artifacts.append(art)
    return art


def export_llm_artifacts(ctx: Context, cfg=None) -> Context:
    from . import export as llm_export

    cfg = llm_config(ctx)
    model, name, out = _hf_model(ctx), ctx.model.name, ctx.out_dir
    if cfg.max_seq_len > getattr(model.config, "max_position_embeddings", cfg.max_seq_len):
        ctx.decide("export", "llm.max_seq_len", "kept", "longer than the model's max_position_embeddings")
    backend = ctx.profile.backend
    gguf = _source_gguf(ctx) if cfg.int4_grid == "source" else None
    gptq = _gptq_rounding(ctx, cfg, model, "pte" in ctx.backend.causal_lm_formats)
    if "pte" in ctx.backend.causal_lm_formats:
        for precision in cfg.pte_variants:
            path = out / f"{name}.{precision}.pte"
            details = llm_export.export_pte(model, path, cfg.max_seq_len, precision, cfg.group_size,
                                            cfg.embedding_quant, gguf, cfg.head_bits("pte"), cfg.block_offsets,
                                            rounding="hqq" if cfg.int4_grid == "hqq" else "affine",
                                            gptq=gptq)
            _add(ctx, path, "pte", "executorch", precision, details, reference=precision == "fp32")
            _tick(ctx)
    else:
        ctx.decide("export", ".pte", "not written", f"the profile's backend is {backend}, not executorch-xnnpack")
    if "onnx" not in ctx.backend.causal_lm_formats:
        ctx.decide("export", "onnx", "not written", f"causal-LM export to {backend} is not supported by edgekd.llm")
        return ctx
    if cfg.onnx_variants:
        fp32_path = out / f"{name}.fp32.onnx"
        details = llm_export.export_onnx_fp32(model, fp32_path, cfg.max_seq_len,
                                              opset=ctx.recipe.stages.export.opset, attention=cfg.onnx_attention)
        _tick(ctx)
        if "fp32" in cfg.onnx_variants:
            _add(ctx, fp32_path, "onnx", "onnxruntime", "fp32", details, reference=True)
        if "int4" in cfg.onnx_variants:
            if cfg.embedding_quant == "int4":
                ctx.decide("export", "int4 ONNX embedding", "fp32", "llm.embedding_quant int4: the ONNX path "
                           "writes 8-bit GatherBlockQuantized only")
            path = out / f"{name}.int4.onnx"
            details = llm_export.quantize_onnx_int4(fp32_path, path, cfg.group_size, cfg.int4_grid,
                                                    gguf, cfg.onnx_accuracy_level, cfg.head_bits("onnx"),
                                                    8 if cfg.embedding_quant == "int8" else None, gptq)
            _add(ctx, path, "onnx", "onnxruntime", "int4", details, False)
        if "int8" in cfg.onnx_variants:
            path = out / f"{name}.int8.onnx"
            _add(ctx, path, "onnx", "onnxruntime", "int8", llm_export.quantize_onnx_int8(fp32_path, path), False)
        if "fp32" not in cfg.onnx_variants:
            fp32_path.unlink()
            ctx.decide("export", fp32_path.name, "deleted after quantizing", "fp32 not in llm.onnx_variants")
    _size_ratios(ctx, model)
    return ctx


def _gptq_rounding(ctx: Context, cfg, model, writes_pte: bool) -> dict | None:
    """GPTQ's 4-bit weights (edgekd/llm/gptq_weights.py), once for both formats: every projection with
    llm.int4_grid gptq, the lm_head with llm.lm_head_bits 4; recorded as a decision."""
    pte = writes_pte and "8da4w" in cfg.pte_variants
    onnx = "onnx" in ctx.backend.causal_lm_formats and "int4" in cfg.onnx_variants
    names = []
    if cfg.int4_grid == "gptq" and (pte or onnx):
        from .gptq_weights import projection_names

        names += projection_names(model)
    if (pte and cfg.head_bits("pte") == 4) or (onnx and cfg.head_bits("onnx") == 4):
        names.append("lm_head")
    if not names:
        return None
    from .gptq_weights import gptq_weights

    quants, how = gptq_weights(model, ctx.model.meta["tokenizer"], cfg, names)
    errors = how["proxy_error"]
    subject = "lm_head" if names == ["lm_head"] else f"{len(names)} Linears"
    detail = (f"relative output error on the calibration text {errors['lm_head']['gptq']:.4f} (round-to-nearest "
              f"with the same scales {errors['lm_head']['round_to_nearest']:.4f})" if names == ["lm_head"] else
              f"median relative output error {how['median_error_vs_round_to_nearest']:.2f}x round-to-nearest's")
    ctx.decide("export", subject, how["what"], f"{detail}; {how['seconds']} s")
    ctx.metrics.setdefault("llm", {})["gptq"] = how
    return quants


def _source_gguf(ctx: Context):
    """The GGUF whose grid the weights still lie on: none once LoRA merging or QAT-KD changed them."""
    lm = ctx.model.lm()
    gguf = lm.gguf
    if gguf and lm.weights_changed:
        ctx.decide("export", "int4 grid", "min/max affine, not the GGUF's", "the weights were changed after loading "
                   "(LoRA merged or QAT-KD), so they no longer lie on the source grid")
        return None
    return gguf


def state_dict_bytes(model) -> int:
    """fp32 bytes of the weights, each storage once (tied embedding/lm_head counted once, as a .pte stores it)."""
    seen, total = set(), 0
    for tensor in list(model.state_dict().values()):
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * 4
    return total


def _size_ratios(ctx: Context, model) -> None:
    """Each quantized artifact against the fp32 artifact of its format, else against the fp32 state dict (said so)."""
    llm = ctx.metrics.setdefault("llm", {})
    llm["fp32_state_dict_bytes"] = state_dict_bytes(model)
    fp32_bytes = {a.format: a.bytes for a in ctx.artifacts if a.precision == "fp32"}
    from_state_dict = []
    for art in ctx.artifacts:
        if art.precision == "fp32":
            continue
        if art.format in fp32_bytes:
            art.details["size_ratio_vs_fp32"] = art.bytes / fp32_bytes[art.format]
            art.details["size_ratio_basis"] = f"fp32 .{art.format} artifact"
        else:
            art.details["size_ratio_vs_fp32"] = art.bytes / llm["fp32_state_dict_bytes"]
            art.details["size_ratio_basis"] = "fp32 state dict (no fp32 artifact of this format was written)"
            from_state_dict.append(art.name)
    llm["size_basis"] = ("each artifact against the fp32 artifact of its format" if not from_state_dict else
                         f"{', '.join(from_state_dict)} against the fp32 state dict "
                         f"({llm['fp32_state_dict_bytes'] / 1e6:.1f} MB, tied weights once): no fp32 artifact of "
                         "that format was written; others against their fp32 artifact")


def prompt_ids(ctx: Context) -> list[list[int]]:
    from .corpus import default_prompts

    cfg, tok = llm_config(ctx), ctx.model.meta["tokenizer"]
    prompts = cfg.prompts or default_prompts(cfg.corpus)
    return [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]


def reference_model(ctx: Context):
    """The fp32 model artifacts are judged against: the one loaded (LoRA merged), not weights trained since.

    QAT-KD (edgekd.llm.qat) replaces `causal_lm.hf_model` with its trained weights, which export quantizes, and keeps
    the original in `causal_lm.reference`; comparing with the trained model would hide what training changed.
    """
    lm = ctx.model.lm()
    if lm.reference is None:
        return lm.hf_model
    ctx.decide("verify", "reference", "the original fp32 model", "the artifacts hold QAT-KD-trained weights; "
               "perplexity and greedy tokens are compared with the model as loaded, before training")
    return lm.reference


def verify_llm(ctx: Context, cfg=None) -> Context:
    from .corpus import corpus_tokens
    from .decode import greedy, matched_prefix, open_session, perplexity, torch_session

    cfg, tok = llm_config(ctx), ctx.model.meta["tokenizer"]
    window = cfg.max_seq_len - 1
    tokens = corpus_tokens(tok, cfg.corpus, cfg.perplexity_tokens)
    prompts = prompt_ids(ctx)
    eos = tok.eos_token_id
    ref_session = torch_session(reference_model(ctx), cfg.max_seq_len)
    reference = [greedy(ref_session, p, cfg.max_new_tokens, eos) for p in prompts]
    ref_ppl = perplexity(ref_session, tokens, window)
    ctx.metrics.setdefault("llm", {}).update({
        "corpus": cfg.corpus, "perplexity_tokens": len(tokens), "fp32_pytorch": ref_ppl,
        "prompts": [tok.decode(p) for p in prompts], "fp32_continuations": [tok.decode(r) for r in reference]})
    budget = ctx.budgets.perplexity_increase
    for art in ctx.artifacts:
        session = open_session(art.path, art.runtime, cfg.max_seq_len)
        outs = [greedy(session, p, cfg.max_new_tokens, eos) for p in prompts]
        matched = [matched_prefix(r, o) for r, o in zip(reference, outs)]
        ppl = perplexity(session, tokens, window)
        increase = ppl["perplexity"] / ref_ppl["perplexity"] - 1
        art.parity = {"greedy_tokens_matched": matched, "greedy_tokens_matched_min": min(matched),
                      "greedy_tokens_compared": [len(r) for r in reference],
                      "continuations": [tok.decode(o) for o in outs], **ppl,
                      "perplexity_fp32": ref_ppl["perplexity"], "perplexity_increase": increase,
                      "perplexity_increase_basis": "relative: artifact / fp32 PyTorch - 1"}
        if budget is not None and not art.is_reference:
            art.verdicts.append(_verdict("perplexity_increase", increase, budget, "max", "relative to fp32 PyTorch"))
        _tick(ctx)
    from .report import publish

    publish(ctx)
    return ctx


def _verdict(metric: str, value: float, limit: float, kind: str, basis: str) -> dict:
    from edgekd.bench.budgets import judge_value

    return judge_value(metric, value, limit, kind, basis=basis).to_dict()


def bench_one(path, runtime: str, prompt: list[int], new_tokens: int, max_len: int, threads: int,
              repeats: int = 3, timeout_s: int = 1800) -> dict:
    """Run edgekd.llm.benchproc in a fresh interpreter and return its JSON."""
    from edgekd.errors import EdgekdError

    cmd = [sys.executable, "-m", "edgekd.llm.benchproc", str(path), "--runtime", runtime,
           "--prompt-ids", ",".join(map(str, prompt)), "--new-tokens", str(new_tokens), "--max-len", str(max_len),
           "--threads", str(threads), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise EdgekdError(f"benchmark process failed: {proc.stderr.strip()[-600:]}", file=str(path))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_llm(ctx: Context, cfg=None) -> Context:
    from .corpus import corpus_tokens

    cfg, tok = llm_config(ctx), ctx.model.meta["tokenizer"]
    prompt = corpus_tokens(tok, cfg.corpus, cfg.prefill_tokens)
    threads = ctx.profile.threads
    if ctx.profile.runner.kind != "local":
        ctx.decide("bench", "llm artifacts", "measured on this machine",
                   f"edgekd.llm benchmarks locally only; runner {ctx.profile.runner.kind} is not used for LLMs")
    from edgekd.bench.budgets import MB, evaluate, site

    budgets = {k: v for k, v in ctx.budgets.model_dump().items()
               if k in ("prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_mb", "artifact_size_mb")}
    # Measured here: judged only when the profile says this host is its device; otherwise host numbers, reported.
    where = site("local", ctx.profile.runner.kind == "local" and ctx.profile.runner.device_is_host,
                 "this machine (edgekd.llm.benchproc)", ctx.profile.name)
    for art in ctx.artifacts:
        art.bench = bench_one(art.path, art.runtime, prompt, cfg.max_new_tokens, cfg.max_seq_len, threads)
        art.bench["machine"] = "this machine (local)"
        art.bench["device"] = where
        if art.is_reference:
            continue
        metrics = {"prefill_tokens_per_s": art.bench["prefill_tokens_per_s"],
                   "decode_tokens_per_s": art.bench["decode_tokens_per_s"],
                   "peak_rss_mb": art.bench["peak_memory_mb"], "artifact_size_mb": art.bytes / MB}
        for v in evaluate(budgets, metrics, artifact=art.name, runner="local",
                          device=where["measured_on"] == "device"):
            v.basis = art.bench.get("peak_memory_basis", "") if v.metric == "peak_memory_mb" else v.basis
            art.verdicts.append(v.to_dict())
        _tick(ctx)
    from .report import publish

    ctx.metrics.setdefault("llm", {})["bench_threads"] = threads
    publish(ctx)
    return ctx
