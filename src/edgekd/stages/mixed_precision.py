"""Stage `mixed_precision`: a precision per layer that meets the artifact-size budget with the least error.

Either solves (exact multiple-choice knapsack over bytes, edgekd.quant.solver) from the sensitivity stage's
measurements, or loads a saved plan (`stages.mixed_precision.plan`). Either way the plan is validated against the
model's layer names, saved as out/<name>/precision_plan.json and put on ctx.plan; ptq/export pass
`plan.float_layers(...)` to the quantizer as skip_modules, and every layer kept in higher precision is recorded
with its sensitivity and the bytes it costs.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.config.schema import MixedPrecisionStage
from edgekd.context import Context
from edgekd.errors import EdgekdError

STAGE = "mixed_precision"
CONTAINER_MARGIN_BYTES = 100_000  # graph, delegate headers, names: measured ~20-60 KB on Lite0 .pte/.onnx files


def candidate_precisions(ctx: Context, cfg: MixedPrecisionStage) -> list[str]:
    allowed = ctx.backend.layer_precisions
    if cfg.precisions is None:
        return list(allowed)
    bad = [p for p in cfg.precisions if p not in allowed]
    if bad:
        raise EdgekdError(f"precision(s) {', '.join(bad)} cannot be held per layer on {ctx.profile.backend}",
                          file=str(ctx.recipe_path), key="stages.mixed_precision.precisions",
                          hint=f"allowed: {', '.join(allowed)}")
    return list(cfg.precisions)


def check(ctx: Context, cfg: MixedPrecisionStage | None) -> None:
    cfg = cfg or MixedPrecisionStage()
    if cfg.plan:
        from edgekd.quant.plan import PrecisionPlan

        PrecisionPlan.load(_plan_path(ctx, cfg))  # exists, parses, precisions known; names checked in run()
        return
    candidate_precisions(ctx, cfg)
    if ctx.budgets.artifact_size_mb is None:
        raise EdgekdError("solving a precision plan needs a size budget", file=str(ctx.recipe_path),
                          key="budgets.artifact_size_mb",
                          hint="set it in the profile or the recipe, or load a saved plan with "
                               "stages.mixed_precision.plan")
    if ctx.recipe.stages.sensitivity is None and ctx.sensitivity is None:
        raise EdgekdError("solving a precision plan needs the sensitivity stage", file=str(ctx.recipe_path),
                          key="stages.sensitivity", hint="add `sensitivity: {}` under stages")


def run(ctx: Context, cfg: MixedPrecisionStage | None) -> Context:
    from edgekd.quant.plan import PrecisionPlan, quantizable_layers

    cfg = cfg or MixedPrecisionStage()
    layers = quantizable_layers(ctx.model.module)
    if cfg.plan:
        plan = PrecisionPlan.load(_plan_path(ctx, cfg))
        plan.validate(layers)
        plan.meta.setdefault("loaded_from", str(_plan_path(ctx, cfg)))
    else:
        plan = solve_plan(ctx, cfg, layers)
    plan.save(ctx.out_dir / "precision_plan.json")
    ctx.plan = plan
    record(ctx, plan, layers)
    return ctx


def solve_plan(ctx: Context, cfg: MixedPrecisionStage, layers: list[str]):
    from edgekd.quant.plan import PrecisionPlan
    from edgekd.quant.solver import MB, LayerOption, solve

    sens = ctx.sensitivity
    if sens is None:
        raise EdgekdError("no sensitivity measurements on the context", key="stages.sensitivity")
    precisions = candidate_precisions(ctx, cfg)
    by_name = {layer.name: layer for layer in sens.layers}
    missing = [p for p in precisions if p != "fp32" and p not in sens.precisions]
    if missing:
        raise EdgekdError(f"sensitivity was not measured at {', '.join(missing)}", file=str(ctx.recipe_path),
                          key="stages.sensitivity.precisions", hint=f"add {', '.join(missing)} there")
    options = []
    for name in layers:
        layer = by_name[name]
        errors = {p: (0.0 if p == "fp32" else float(layer.nsr[p])) for p in precisions}
        options.append(LayerOption(name=name, bytes={p: int(layer.bytes[p]) for p in precisions}, error=errors))
    if cfg.overhead_mb is not None:
        overhead = int(cfg.overhead_mb * MB)
        overhead_how = "stages.mixed_precision.overhead_mb"
    else:
        overhead = int(sens.non_layer_bytes) + CONTAINER_MARGIN_BYTES
        overhead_how = (f"estimated: {sens.non_layer_bytes} non-layer fp32 bytes + {CONTAINER_MARGIN_BYTES} "
                        f"container margin")
        ctx.decide(STAGE, "overhead", f"{overhead / MB:.3f} MB", overhead_how)
    budget_mb = ctx.budgets.artifact_size_mb
    solution = solve(options, int(budget_mb * MB), overhead, granularity=cfg.granularity_kb * 1024)
    meta = {"budget_mb": budget_mb, "estimated_bytes": solution.total_bytes, "overhead_bytes": overhead,
            "overhead_source": overhead_how, "estimated_error": solution.estimated_error,
            "error_measure": "sum of per-layer noise-to-signal power ratios (10^(-SQNR/10))",
            "alternatives": solution.alternatives, "candidates": precisions, "backend": ctx.profile.backend,
            "solver": f"exact multiple-choice knapsack, {cfg.granularity_kb} KiB buckets"}
    return PrecisionPlan.from_choices(solution.choices, meta)


def record(ctx: Context, plan, layers: list[str]) -> None:
    """Every layer held above int8 goes into decisions and metrics with its sensitivity and extra bytes."""
    sens = {layer.name: layer for layer in (ctx.sensitivity.layers if ctx.sensitivity else [])}
    kept = []
    for name, precision in plan.resolve_all(layers).items():
        if precision == "int8":
            continue
        layer = sens.get(name)
        sqnr = layer.sqnr_db.get("int8") if layer else None
        extra = (layer.bytes[precision] - layer.bytes["int8"]) if layer and layer.bytes else None
        kept.append({"layer": name, "precision": precision, "int8_sqnr_db": sqnr, "extra_bytes": extra})
        why = (f"int8 alone gives SQNR {sqnr:.1f} dB at the output; costs {extra / 1e3:+.1f} KB"
               if sqnr is not None and extra is not None else "the plan says so")
        ctx.decide(STAGE, name, f"kept in {precision}", why)
    ctx.metrics[STAGE] = {"plan": plan.to_dict(), "layers_above_int8": kept,
                          "counts": _counts(plan.resolve_all(layers))}


def _counts(resolved: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for precision in resolved.values():
        counts[precision] = counts.get(precision, 0) + 1
    return counts


def _plan_path(ctx: Context, cfg: MixedPrecisionStage) -> Path:
    path = Path(cfg.plan)
    if not path.is_absolute() and not path.exists():
        path = ctx.recipe_path.parent / path
    return path
