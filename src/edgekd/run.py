"""`edgekd export`: config -> Context -> stages -> out/<name>/ (artifacts, manifest.json, report.md), and a verdict.

The run is staged in a hidden sibling folder and renamed onto out/<name>/ only when complete, so a failed or
interrupted run never leaves a half-written output, and an existing output is replaced only with --force.
Checkpoints live in out/<name>.work/ so `--resume` survives an interrupted run. One run at a time holds the claim on
out/<name> (report.atomic.claim); a failed run removes the folders it created while they are empty, and the next run
removes staging folders of processes that died (SIGKILL).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekd.config.loading import PROJECT_ROOT, load_recipe_and_profile
from edgekd.context import Context
from edgekd.errors import EXIT_GATE_FAILED, EXIT_OK, EdgekdError
from edgekd.report.atomic import claim, prune_empty_dirs, remove_stale_staging

MIN_FREE_BYTES = 64 << 20  # less than this cannot hold even the smallest run's artifacts
DEFAULT_RECIPE = PROJECT_ROOT / "recipes" / "efficientnet_lite0" / "ptq_int8.yaml"


def export_run(recipe_path: str | Path, profile: str, out_root: Path, *, force: bool = False, resume: bool = False,
               device: str = "cpu", skip: tuple[str, ...] = (), overrides: list[str] = (), quiet: bool = False,
               strict: bool = False) -> int:
    recipe, prof, recipe_file, profile_file = load_recipe_and_profile(recipe_path, profile, list(overrides))
    if _worker_rank() > 0:
        return _train_as_worker(recipe, prof, recipe_file, profile_file, Path(out_root), device, skip, resume)
    out_root = Path(out_root)
    check_out_folder(out_root)
    final = out_root / recipe.name
    _refuse_existing(final, force)
    created = _missing_parents(out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgekdError(f"cannot create the output folder: {exc.strerror or exc}", file=str(out_root),
                          key="--out") from exc
    work = out_root / f"{recipe.name}.work"
    try:
        with claim(out_root, recipe.name):
            _refuse_existing(final, force)  # a run that held the claim before us may have finished meanwhile
            remove_stale_staging(out_root, recipe.name)
            staging = out_root / f".{recipe.name}.staging-{os.getpid()}"
            try:
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir()
                work.mkdir(exist_ok=True)
                ctx = Context(recipe=recipe, profile=prof, recipe_path=recipe_file, profile_path=profile_file,
                              out_dir=staging, work_dir=work, device=device, resume=resume)
                ctx = _run_with_progress(ctx, skip, quiet)
                _write_outputs(ctx, staging)
                _swap_into_place(staging, final)
            finally:  # still under the claim: another run's work folder is never touched
                shutil.rmtree(staging, ignore_errors=True)
                prune_empty_dirs(work)  # checkpoints for --resume stay; an empty work folder does not
    finally:
        for folder in created:  # innermost first: only folders this run made, and only while empty
            _rmdir_quietly(folder)
    ctx.out_dir = final
    from edgekd.report.console import print_summary

    verdict = print_summary(ctx, final, quiet=quiet)
    # unverified (a device budget measured only on this host, or not at all) is exit 0 with its reason printed,
    # and a failure under --strict
    return EXIT_GATE_FAILED if verdict == "fail" or (strict and verdict == "unverified") else EXIT_OK


def _worker_rank() -> int:
    """This process's rank under torchrun (WORLD_SIZE > 1), else 0."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def _train_as_worker(recipe, prof, recipe_file: Path, profile_file: Path, out_root: Path, device: str,
                     skip: tuple[str, ...], resume: bool) -> int:
    """A torchrun rank other than 0: load the same data and model, take part in the DDP training stages, write
    nothing. Rank 0 alone exports, verifies, benchmarks and writes out/<name>/ (README, "Distributed training")."""
    import tempfile

    from edgekd.pipeline import run_pipeline

    with tempfile.TemporaryDirectory(prefix="edgekd-rank-") as scratch:
        ctx = Context(recipe=recipe, profile=prof, recipe_path=recipe_file, profile_path=profile_file,
                      out_dir=Path(scratch), work_dir=out_root / f"{recipe.name}.work", device=device, resume=resume)
        run_pipeline(ctx, tuple(skip) + ("export", "verify", "bench"))
    return EXIT_OK


def check_out_folder(out_root: Path) -> None:
    """Refuse an --out that cannot work before minutes of stages: a file, a name the OS refuses, no write
    permission or a full disk. Nothing is created here."""
    text = str(out_root)
    if "\0" in text or not text.strip():
        raise EdgekdError("not a usable folder name", file=repr(text), key="--out")
    for part in out_root.parts:
        if len(os.fsencode(part)) > 255:
            raise EdgekdError(f"a path component is {len(os.fsencode(part))} bytes (the limit is 255)",
                              file=text[:120] + "...", key="--out")
    existing = out_root
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "a broken link" if existing.is_symlink() and not existing.exists() else "a file"
        raise EdgekdError(f"{existing} is {what}, not a folder", file=text, key="--out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EdgekdError(f"no permission to write in {existing}", file=text, key="--out",
                          hint="choose an --out you can write to")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise EdgekdError(f"the disk holding {existing} has {free >> 20} MiB free (at least "
                          f"{MIN_FREE_BYTES >> 20} MiB needed)", file=text, key="--out")


def _refuse_existing(final: Path, force: bool) -> None:
    if (final.exists() or final.is_symlink()) and not force:
        raise EdgekdError("output folder exists; nothing was changed", file=str(final),
                          hint="pass --force to replace it, or --out another folder")
    if final.exists() and not final.is_dir():
        raise EdgekdError("output path exists and is not a folder; nothing was changed", file=str(final))


def _missing_parents(folder: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create, innermost first (removed again if the run fails)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _rmdir_quietly(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _run_with_progress(ctx: Context, skip: tuple[str, ...], quiet: bool) -> Context:
    """Stages with live bars on a terminal and plain `[i/n] stage` lines elsewhere (report.progress)."""
    from edgekd.pipeline import planned_stages, run_pipeline
    from edgekd.report.progress import stage_progress

    with stage_progress(len(planned_stages(ctx, skip)), quiet=quiet) as display:
        ctx.progress = display.tick
        try:
            ctx = run_pipeline(ctx, skip, on_stage=display.start)
        finally:
            ctx.progress = None
    return ctx


def _write_outputs(ctx: Context, folder: Path) -> None:
    import numpy as np

    from edgekd.report.atomic import write_text
    from edgekd.report.manifest import build_manifest, write_manifest
    from edgekd.report.markdown import render_manifest

    if ctx.model is not None and ctx.task_record.example_inputs:
        np.savez(folder / "inputs.npz", **{n: t.numpy() for n, t in zip(ctx.model.input_names,
                                                                         ctx.model.example_inputs)})
    manifest = build_manifest(ctx, folder)
    write_manifest(folder, manifest)
    write_text(folder / "report.md", render_manifest(manifest))


def _swap_into_place(staging: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
