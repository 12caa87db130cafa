"""Causal LM students (Qwen2/Llama families): KV-cache export to ExecuTorch (8da4w) and ONNX (int4/int8), greedy
decoding in each runtime, perplexity on a real corpus, prefill/decode tokens/s.

The pipeline stages dispatch here by task ("causal-lm"). Everything heavy is imported inside the functions so
`import edgekd.llm` stays cheap (docs/architecture.md, rule 8).
"""

from __future__ import annotations


def load_causal_lm_bundle(folder, data_cfg=None, source=None):
    from .models import load_causal_lm_bundle as _impl

    return _impl(folder, data_cfg, source)


def export_llm_artifacts(ctx):
    from .pipeline import export_llm_artifacts as _impl

    return _impl(ctx)


def verify_llm(ctx):
    from .pipeline import verify_llm as _impl

    return _impl(ctx)


def bench_llm(ctx):
    from .pipeline import bench_llm as _impl

    return _impl(ctx)


__all__ = ["load_causal_lm_bundle", "export_llm_artifacts", "verify_llm", "bench_llm"]
