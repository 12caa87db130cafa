"""Measure SmolLM2-135M ONNX variants: bytes, perplexity (first 512 tokens of Pride and Prejudice, windows of 255,
as recipes/smollm2/8da4w.yaml) and prefill/decode tokens/s, benchmarks interleaved in fresh processes (with
--bench-only, the .pte files tools/llm_pte_measure.py wrote in OUT_DIR too; 64-token prompt, 32 decode steps).

    PYTHONPATH=src python tools/llm_int4_measure.py OUT_DIR [--rounds 3] [--threads 2] [--skip-export]
        [--attention gqa|standard] [--extra NAME=PATH ...]

--extra times other ONNX/.pte files in the same interleaved rounds (e.g. the files of another --attention).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

VARIANTS = {  # name -> quantize_onnx_int4 keyword arguments (None: int8 dynamic)
    "int4.symmetric.acc0": dict(grid="symmetric", accuracy_level=0),  # the int4 ONNX before the source grid
    "int4.source.acc0": dict(grid="source", accuracy_level=0),
    "int4.source.acc4": dict(grid="source", accuracy_level=4),
    "int4.source.acc4.head8.emb8": dict(grid="source", accuracy_level=4, lm_head_bits=8, embedding_bits=8),
    # 4-bit lm_head rounded by GPTQ on Emma (edgekd/llm/gptq_weights.py); the embedding keeps its own 8-bit table
    "int4.source.acc4.head4gptq.emb8": dict(grid="source", accuracy_level=4, lm_head_bits=4, embedding_bits=8),
    # llm.int4_grid gptq (checkpoints with no grid to keep): every projection GPTQ-rounded on Emma
    "int4.gptq.acc4.head8.emb8": dict(grid="gptq", accuracy_level=4, lm_head_bits=8, embedding_bits=8),
    "int4.hqq.acc4.head8.emb8": dict(grid="hqq", accuracy_level=4, lm_head_bits=8, embedding_bits=8),
    "int8": None,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated variants to (re)quantize and score")
    parser.add_argument("--bench-only", action="store_true", help="benchmark the files already in OUT_DIR")
    parser.add_argument("--attention", default="gqa", help="llm.onnx_attention of the fp32 export: gqa | standard")
    parser.add_argument("--extra", action="append", default=[], help="NAME=PATH: also time this file each round")
    args = parser.parse_args()
    import torch

    from edgekd.llm.corpus import corpus_tokens
    from edgekd.llm.decode import onnx_session, perplexity, torch_session
    from edgekd.llm.export import export_onnx_fp32, quantize_onnx_int4, quantize_onnx_int8
    from edgekd.llm.models import load_causal_lm, smollm2_folder, smollm2_gguf_path
    from edgekd.llm.stages import bench_one

    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model, tok = load_causal_lm(smollm2_folder())
    fp32 = out / "smollm2.fp32.onnx"
    if not args.skip_export or not fp32.exists():
        export_onnx_fp32(model, fp32, 256, attention=args.attention)
    tokens = corpus_tokens(tok, "austen:prideprejudice", 512)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    names = [] if args.bench_only else [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    if not args.bench_only:
        results["fp32_pytorch"] = {"perplexity": perplexity(torch_session(model, 256), tokens, 255)["perplexity"]}
    paths = {"fp32": fp32, **{n: out / f"smollm2.{n}.onnx" for n in VARIANTS if (out / f"smollm2.{n}.onnx").exists()}}
    paths.update({p.stem: p for p in sorted(out.glob("*.pte")) if args.bench_only})  # tools/llm_pte_measure.py
    paths.update(dict(item.split("=", 1) for item in args.extra))
    paths = {name: Path(path) for name, path in paths.items()}
    for name in names:
        path = out / f"smollm2.{name}.onnx"
        kw = VARIANTS[name]
        if kw is None:
            details = quantize_onnx_int8(fp32, path)
        else:
            from edgekd.config.schema import LlmConfig
            from edgekd.llm.gptq_weights import gptq_lm_head, gptq_weights, projection_names

            if kw.get("lm_head_bits") == 4:
                kw = {**kw, "gptq": {"lm_head": gptq_lm_head(model, tok, LlmConfig(lm_head_bits=4))[0]}}
            if kw.get("grid") == "gptq":
                kw = {**kw, "gptq": gptq_weights(model, tok, LlmConfig(int4_grid="gptq"), projection_names(model))[0]}
            details = quantize_onnx_int4(fp32, path, 32, gguf=smollm2_gguf_path(), **kw)
        layers = details.pop("layers", None)
        if layers:
            (out / f"{name}.layers.json").write_text(json.dumps(layers, indent=1))
        results[name] = {"details": {k: v for k, v in details.items() if k != "left_float"}}
        paths[name] = path
    for name in (["fp32"] + names) if names else []:
        path = paths[name]
        ppl = perplexity(onnx_session(path, 256, threads=1), tokens, 255)["perplexity"]
        results.setdefault(name, {}).update({"bytes": path.stat().st_size, "perplexity": ppl})
        print(name, path.stat().st_size, f"{ppl:.3f}", flush=True)
    prompt = corpus_tokens(tok, "austen:prideprejudice", 64)
    for r in range(args.rounds):  # interleaved: every artifact once per round
        for name, path in paths.items():
            runtime = "executorch" if path.suffix == ".pte" else "onnxruntime"
            b = bench_one(path, runtime, prompt, 32, 256, args.threads, repeats=3)
            entry = results.setdefault(name, {})
            entry["bench"] = [] if r == 0 else entry.get("bench", [])
            entry["bench"].append(
                {k: b[k] for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_mb", "load_s")})
            print(r, name, f"prefill {b['prefill_tokens_per_s']:.0f} decode {b['decode_tokens_per_s']:.1f}",
                  flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
