"""End-to-end proof for issue 7 until `edgekd export` dispatches causal LMs: SmolLM2-135M through the real stages.

    .venv/bin/python tools/llm_report.py [--recipe recipes/smollm2/8da4w.yaml] [--profile snapdragon865] [--out DIR]

Runs the load stage (model converted from GGUF once and cached, Jane Austen data), then edgekd.llm's export, verify
and bench, and prints one table: size, size vs fp32, perplexity, greedy tokens matched, prefill/decode tokens/s,
load time and peak memory per artifact, and the fp32 PyTorch perplexity. Writes llm_report.json beside the artifacts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    import torch

    from edgekd.config.loading import load_recipe_and_profile
    from edgekd.context import Context
    from edgekd.pipeline import run_pipeline
    from edgekd.report.atomic import write_json

    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/smollm2/8da4w.yaml")
    parser.add_argument("--profile", default="snapdragon865")
    parser.add_argument("--out", default="out/llm_report")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe, profile, rfile, pfile = load_recipe_and_profile(Path(args.recipe), args.profile,
                                                            args.overrides + [f"profile.threads={args.threads}"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(recipe=recipe, profile=profile, recipe_path=rfile, profile_path=pfile, out_dir=out)
    ctx = run_pipeline(ctx, on_stage=lambda name, summary: print(f"[{name}] {summary}", flush=True),
                       only=("load", "export", "verify", "bench"))
    print(", ".join(f"{name} {seconds:.0f} s" for name, seconds in ctx.timings.items()), flush=True)
    rows = []
    for a in ctx.artifacts:
        rows.append({"artifact": a.name, "runtime": a.runtime, "precision": a.precision,
                     "size_mb": a.bytes / 2**20, "size_vs_fp32": a.details.get("size_ratio_vs_fp32", 1.0),
                     "perplexity": a.parity["perplexity"], "ppl_increase": a.parity["perplexity_increase"],
                     "greedy_matched": a.parity["greedy_tokens_matched"],
                     "prefill_tok_s": a.bench["prefill_tokens_per_s"], "decode_tok_s": a.bench["decode_tokens_per_s"],
                     "load_s": a.bench["load_s"], "peak_mb": a.bench["peak_memory_mb"],
                     "verdicts": [f"{v['metric']}={v['value']:.3g} {v['status']}" for v in a.verdicts]})
    llm = ctx.metrics["llm"]
    print(f"\nfp32 PyTorch perplexity on {llm['corpus']} (first {llm['perplexity_tokens']} tokens, windows of "
          f"{llm['fp32_pytorch']['window']}): {llm['fp32_pytorch']['perplexity']:.3f}")
    head = f"{'artifact':34} {'MB':>7} {'vs fp32':>7} {'ppl':>8} {'+ppl':>7} {'greedy':>12} {'prefill t/s':>11} " \
           f"{'decode t/s':>10} {'load s':>6} {'peak MB':>7}"
    print(head)
    for r in rows:
        print(f"{r['artifact']:34} {r['size_mb']:7.1f} {r['size_vs_fp32']:7.1%} {r['perplexity']:8.3f} "
              f"{r['ppl_increase']:+7.1%} {'/'.join(map(str, r['greedy_matched'])):>12} {r['prefill_tok_s']:11.1f} "
              f"{r['decode_tok_s']:10.1f} {r['load_s']:6.2f} {r['peak_mb']:7.0f}")
    print(f"(greedy = tokens matching fp32 PyTorch per prompt, of"
          f" {recipe.llm.max_new_tokens} generated; threads={args.threads})")
    for a in ctx.artifacts:
        if a.format == "pte" and a.precision == "8da4w":
            print(f"\n8da4w .pte continuation of {llm['prompts'][0]!r}:\n  {a.parity['continuations'][0]!r}")
    print(f"fp32 PyTorch continuation:\n  {llm['fp32_continuations'][0]!r}")
    write_json(out / "llm_report.json", {"rows": rows, "llm": llm, "timings": ctx.timings,
                                         "details": {a.name: a.details for a in ctx.artifacts},
                                         "decisions": [d.__dict__ for d in ctx.decisions]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
