"""`edgekd sensitivity`: per-layer quantization sensitivity for a recipe's model, and optionally a plan under a budget.

Runs the recipe's load (and fuse, when enabled) stages, then the sensitivity stage, prints the ranked table and
writes sensitivity.json + sensitivity.png (and precision_plan.json with --budget-mb) into OUT/<recipe>-sensitivity/.
The plan file can then drive a full run: `stages: {mixed_precision: {plan: PATH}}`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekd.cli.common import finite, handles_errors


@click.command("sensitivity")
@click.option("--profile", "-p", required=True, help="device profile name or YAML path (decides int4/fp16 support)")
@click.option("--recipe", "-r", required=True, type=click.Path(path_type=Path), help="recipe YAML")
@click.option("--out", "-o", "out_root", default=Path("out"), type=click.Path(path_type=Path), show_default=True)
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="calibration samples per layer (default: the recipe's, 16)")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["int8", "int4", "fp16"]),
              help="precision(s) to measure (repeatable; default: int8 + what the backend supports)")
@click.option("--budget-mb", type=click.FloatRange(min=0, min_open=True), default=None, callback=finite,
              help="also solve a precision plan under this artifact size (MB) and write precision_plan.json")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, help="rows of the table to print")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a recipe or profile key")
@handles_errors
def sensitivity(profile, recipe, out_root, samples, precisions, budget_mb, top, overrides):
    """Rank layers by the error each adds alone when quantized; optionally solve a mixed-precision plan."""
    from rich.console import Console

    from edgekd.config.loading import load_recipe_and_profile
    from edgekd.config.schema import MixedPrecisionStage, SensitivityStage
    from edgekd.context import Context
    from edgekd.pipeline import run_pipeline
    from edgekd.quant.sensitivity import render_table

    rec, prof, recipe_file, profile_file = load_recipe_and_profile(recipe, profile, list(overrides))
    cfg = rec.stages.sensitivity or SensitivityStage()
    updates = {}
    if samples is not None:
        updates["samples"] = samples
    if precisions:
        updates["precisions"] = list(precisions)
    cfg = cfg.model_copy(update=updates)
    out_dir = Path(out_root) / f"{rec.name}-sensitivity"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(recipe=rec, profile=prof, recipe_path=recipe_file, profile_path=profile_file, out_dir=out_dir)
    console = Console(stderr=True)
    with console.status("loading model and data") as status:
        def on_stage(name: str, summary: str) -> None:
            status.update(f"measuring {cfg.samples} samples x every Conv/Linear" if name == "sensitivity" else summary)

        ctx = run_pipeline(ctx, on_stage=on_stage, only=("load", "fuse", "sensitivity"), configs={"sensitivity": cfg})
    result = ctx.sensitivity
    Console(width=max(Console().width, 150)).print(render_table(result, limit=top))
    click.echo(f"wrote {out_dir / 'sensitivity.json'} and {ctx.plots.get('sensitivity', '(no chart)')}")
    if budget_mb is not None:
        from edgekd.config.schema import Budgets

        ctx.profile = prof.model_copy(update={"budgets": Budgets(**{**prof.budgets.model_dump(),
                                                                    "artifact_size_mb": budget_mb})})
        ctx.recipe = rec.model_copy(update={"budgets": None})
        mp_cfg = rec.stages.mixed_precision or MixedPrecisionStage()
        ctx = run_pipeline(ctx, only=("mixed_precision",), configs={"mixed_precision": mp_cfg.model_copy(
            update={"plan": None})})
        meta = ctx.plan.meta
        click.echo(f"plan: {ctx.metrics['mixed_precision']['counts']} estimated {meta['estimated_bytes'] / 1e6:.2f} MB"
                   f" <= {budget_mb} MB, estimated error {meta['estimated_error']:.3e} "
                   f"(all-int8 {meta['alternatives'].get('all-int8', {}).get('estimated_error', float('nan')):.3e})")
        click.echo(f"wrote {out_dir / 'precision_plan.json'}")
    sys.exit(0)
