"""End to end: sensitivity -> plan under a size budget -> .pte and ONNX artifacts -> error measured in their runtimes.

    HF_HUB_OFFLINE=1 .venv/bin/python tools/mixed_precision_demo.py --out /tmp/mp_demo [--samples 16] [--budget-mb 7]

Steps (EfficientNet-Lite0 with ImageNet weights, real photo crops from the recipe's data source):
1. load + fuse (recipes/efficientnet_lite0/mixed_int8.yaml), per-layer sensitivity on the calibration split;
2. fp32 and all-int8 .pte; the fixed overhead (bytes that are not layer weights) measured from their sizes;
3. the knapsack plan under --budget-mb (default: halfway between the int8 and fp32 .pte sizes' low end: int8+1.5 MB);
4. mixed .pte (PT2E with the plan's float layers left out of XNNPACKQuantizer) and onnxruntime static QDQ ONNX
   (all-int8 and mixed: nodes_to_exclude from the plan), per-layer precision read back from each artifact;
5. every artifact run in its runtime (executorch.runtime, onnxruntime) on the eval split, compared with the fp32
   PyTorch model: SQNR, KL of softmax, top-1 agreement; sizes against the budget. Writes OUT/demo.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def measure(run, samples, reference: np.ndarray) -> dict:
    outs = np.concatenate([np.asarray(run(sample)[0], dtype=np.float64) for sample in samples], axis=0)
    ref = reference.astype(np.float64)
    noise = float(((ref - outs) ** 2).sum())
    sqnr = 10 * math.log10(float((ref ** 2).sum()) / noise) if noise > 0 else math.inf
    p = torch.log_softmax(torch.from_numpy(ref), -1)
    q = torch.log_softmax(torch.from_numpy(outs), -1)
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    agree = float((ref.argmax(-1) == outs.argmax(-1)).mean())
    return {"sqnr_db": sqnr, "kl": kl, "top1_agreement": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mp_demo"))
    parser.add_argument("--samples", type=int, default=16, help="sensitivity samples per layer")
    parser.add_argument("--eval", type=int, default=32, help="eval images run through every artifact")
    parser.add_argument("--budget-mb", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from edgekd.config.loading import load_recipe_and_profile
    from edgekd.context import Context
    from edgekd.quant.inspect import compare_with_plan
    from edgekd.quant.mixed import export_fp32_onnx, onnx_with_plan, pte_with_plan
    from edgekd.quant.plan import PrecisionPlan, quantizable_layers
    from edgekd.quant.solver import MB, LayerOption, solve
    from edgekd.runtime import load_onnx, load_pte
    from edgekd.stages import fuse as fuse_stage
    from edgekd.stages import load as load_stage
    from edgekd.stages import sensitivity as sens_stage

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    recipe, profile, rpath, ppath = load_recipe_and_profile(
        ROOT / "recipes/efficientnet_lite0/mixed_int8.yaml", "snapdragon865",
        [f"data.eval_samples={args.eval}", "data.calibration_samples=32"])
    ctx = Context(recipe=recipe, profile=profile, recipe_path=rpath, profile_path=ppath, out_dir=out)
    t = time.perf_counter()
    ctx = load_stage.run(ctx, None)
    ctx = fuse_stage.run(ctx, recipe.stages.fuse)
    timings["load_fuse_s"] = time.perf_counter() - t
    module, example = ctx.model.module, ctx.model.example_inputs
    layers = quantizable_layers(module)
    calib = ctx.data.calibration.inputs
    evals = ctx.data.eval.inputs
    with torch.no_grad():
        reference = torch.cat([ctx.reference(*s) for s in evals]).numpy()

    t = time.perf_counter()
    ctx = sens_stage.run(ctx, recipe.stages.sensitivity.model_copy(update={"samples": args.samples,
                                                                           "precisions": ["int8"]}))
    timings["sensitivity_s"] = time.perf_counter() - t
    sens = {layer["name"]: layer for layer in ctx.metrics["sensitivity"]["layers"]}

    results: dict[str, dict] = {}
    all_int8 = PrecisionPlan(rules={"_default": "int8"})
    t = time.perf_counter()
    fp32 = pte_with_plan(module, example, calib, None, out / "fp32.pte")
    int8 = pte_with_plan(module, example, calib, all_int8, out / "int8.pte")
    timings["pte_fp32_int8_s"] = time.perf_counter() - t
    size = {k: (out / f"{k}.pte").stat().st_size for k in ("fp32", "int8")}
    layer_bytes = {p: sum(sens[n]["bytes"][p] for n in layers) for p in ("fp32", "int8")}
    overhead = max(size["fp32"] - layer_bytes["fp32"], size["int8"] - layer_bytes["int8"])
    budget_mb = args.budget_mb or round((size["int8"] + 1_500_000) / MB, 2)
    assert size["int8"] < budget_mb * MB < size["fp32"], "budget must lie between the int8 and fp32 sizes"

    options = [LayerOption(n, {p: sens[n]["bytes"][p] for p in ("int8", "fp32")},
                           {"int8": sens[n]["nsr"]["int8"], "fp32": 0.0}) for n in layers]
    t = time.perf_counter()
    solution = solve(options, int(budget_mb * MB), overhead)
    timings["solve_s"] = time.perf_counter() - t
    plan = PrecisionPlan.from_choices(solution.choices, {"budget_mb": budget_mb, "overhead_bytes": overhead,
                                                         "estimated_bytes": solution.total_bytes,
                                                         "estimated_error": solution.estimated_error})
    plan.validate(layers)
    plan.save(out / "precision_plan.json")
    plan = PrecisionPlan.load(out / "precision_plan.json")  # the saved file drives every exporter below

    t = time.perf_counter()
    mixed = pte_with_plan(module, example, calib, plan, out / "mixed.pte")
    timings["pte_mixed_s"] = time.perf_counter() - t
    for name, art, asked in (("pte_int8", int8, all_int8), ("pte_mixed", mixed, plan)):
        rows = compare_with_plan(asked, art["layers"], layers)
        results[name] = {"bytes": art["path"].stat().st_size,
                         "layers_matching_plan": sum(r["ok"] for r in rows), "layers": len(rows),
                         "mismatches": [r for r in rows if not r["ok"]]}
    results["pte_fp32"] = {"bytes": size["fp32"]}
    for name in ("pte_fp32", "pte_int8", "pte_mixed"):
        results[name].update(measure(load_pte(out / f"{name.split('_')[1]}.pte"), evals, reference))

    t = time.perf_counter()
    fp32_onnx = export_fp32_onnx(module, example, out / "fp32.onnx", input_names=ctx.model.input_names)
    onnx_calib = calib[:16]
    o_int8 = onnx_with_plan(fp32_onnx, onnx_calib, all_int8, out / "int8_qdq.onnx", layers)
    o_mixed = onnx_with_plan(fp32_onnx, onnx_calib, plan, out / "mixed_qdq.onnx", layers)
    timings["onnx_s"] = time.perf_counter() - t
    for name, art, asked in (("onnx_int8", o_int8, all_int8), ("onnx_mixed", o_mixed, plan)):
        rows = compare_with_plan(asked, art["layers"], layers)
        results[name] = {"bytes": art["path"].stat().st_size, "excluded_nodes": len(art["excluded_nodes"]),
                         "layers_matching_plan": sum(r["ok"] for r in rows), "layers": len(rows),
                         "mismatches": [r for r in rows if not r["ok"]]}
    results["onnx_fp32"] = {"bytes": fp32_onnx.stat().st_size}
    for name, path in (("onnx_fp32", fp32_onnx), ("onnx_int8", out / "int8_qdq.onnx"),
                       ("onnx_mixed", out / "mixed_qdq.onnx")):
        results[name].update(measure(load_onnx(path, threads=args.threads), evals, reference))

    report = {"budget_mb": budget_mb, "overhead_bytes": overhead, "plan_counts": {
        p: sum(1 for v in plan.resolve_all(layers).values() if v == p) for p in ("int8", "fp32")},
        "estimated": {"mixed_bytes": solution.total_bytes, "mixed_error": solution.estimated_error,
                      "all_int8_error": solution.alternatives["all-int8"]["estimated_error"]},
        "sensitivity_samples": args.samples, "eval_images": len(evals), "timings": timings, "artifacts": results}
    for kind in ("pte", "onnx"):
        mixed_r, int8_r = results[f"{kind}_mixed"], results[f"{kind}_int8"]
        report[f"{kind}_acceptance"] = {
            "mixed_meets_budget": mixed_r["bytes"] <= budget_mb * MB,
            "mixed_lower_error_than_int8": mixed_r["sqnr_db"] > int8_r["sqnr_db"] and mixed_r["kl"] < int8_r["kl"],
            "every_layer_as_planned": not mixed_r["mismatches"]}
    (out / "demo.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "artifacts"}, indent=2, default=str))
    for name, r in results.items():
        print(f"{name:11s} {r['bytes'] / MB:7.3f} MB  SQNR {r['sqnr_db']:6.2f} dB  KL {r['kl']:.4f}  "
              f"top1 {r['top1_agreement']:.3f}  plan-ok {r.get('layers_matching_plan', '-')}/{r.get('layers', '-')}")


if __name__ == "__main__":
    main()
