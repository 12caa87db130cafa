"""`edgekd export`: config -> Context -> stages -> out/<name>/ (artifacts, manifest.json, report.md), and a verdict.

The run is staged in a hidden sibling folder and renamed onto out/<name>/ only when complete, so a failed or
interrupted run never leaves a half-written output, and an existing output is replaced only with --force.
Checkpoints live in out/<name>.work/ so `--resume` survives an interrupted run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekd.config.loading import PROJECT_ROOT, load_recipe_and_profile
from edgekd.context import Context
from edgekd.errors import EXIT_GATE_FAILED, EXIT_OK, EdgekdError

DEFAULT_RECIPE = PROJECT_ROOT / "recipes" / "efficientnet_lite0" / "ptq_int8.yaml"


def export_run(recipe_path: str | Path, profile: str, out_root: Path, *, force: bool = False, resume: bool = False,
               device: str = "cpu", skip: tuple[str, ...] = (), overrides: list[str] = (), quiet: bool = False,
               strict: bool = False) -> int:
    recipe, prof, recipe_file, profile_file = load_recipe_and_profile(recipe_path, profile, list(overrides))
    final = Path(out_root) / recipe.name
    if final.exists() and not force:
        raise EdgekdError("output folder exists; nothing was changed", file=str(final),
                          hint="pass --force to replace it, or --out another folder")
    staging = Path(out_root) / f".{recipe.name}.staging-{os.getpid()}"
    work = Path(out_root) / f"{recipe.name}.work"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(recipe=recipe, profile=prof, recipe_path=recipe_file, profile_path=profile_file, out_dir=staging,
                  work_dir=work, device=device, resume=resume)
    try:
        ctx = _run_with_progress(ctx, skip, quiet)
        _write_outputs(ctx, staging)
        _swap_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.out_dir = final
    from edgekd.report.console import print_summary

    verdict = print_summary(ctx, final, quiet=quiet)
    # unverified (a device budget measured only on this host, or not at all) is exit 0 with its reason printed,
    # and a failure under --strict
    return EXIT_GATE_FAILED if verdict == "fail" or (strict and verdict == "unverified") else EXIT_OK


def _run_with_progress(ctx: Context, skip: tuple[str, ...], quiet: bool) -> Context:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgekd.pipeline import planned_stages, run_pipeline

    console = Console(stderr=True, quiet=quiet)
    stages = planned_stages(ctx, skip)
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        overall = progress.add_task("stages", total=len(stages))
        current = {"task": None}

        def on_stage(name: str, summary: str) -> None:
            if current["task"] is not None:
                progress.update(current["task"], completed=progress.tasks[current["task"]].total or 1)
                progress.advance(overall)
            current["task"] = progress.add_task(f"{name}: {summary}", total=None)

        def tick() -> None:
            if current["task"] is not None:
                progress.advance(current["task"])

        ctx.progress = tick
        ctx = run_pipeline(ctx, skip, on_stage=on_stage)
        if current["task"] is not None:
            progress.update(current["task"], total=1, completed=1)
            progress.advance(overall)
    ctx.progress = None
    return ctx


def _write_outputs(ctx: Context, folder: Path) -> None:
    import numpy as np

    from edgekd.report.atomic import write_json, write_text
    from edgekd.report.manifest import build_manifest
    from edgekd.report.markdown import render

    if ctx.model is not None and ctx.model.task != "causal-lm":
        np.savez(folder / "inputs.npz", **{n: t.numpy() for n, t in zip(ctx.model.input_names,
                                                                         ctx.model.example_inputs)})
    write_json(folder / "manifest.json", build_manifest(ctx, folder))
    write_text(folder / "report.md", render(ctx, folder))


def _swap_into_place(staging: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
