"""What the distill and qat stages share around the trainer: teacher checks, checkpoint folder, reporting.

Teacher problems must surface before anything heavy runs: `check_teacher_config` runs in the pipeline's
prerequisite pass (before load, from the recipe alone); `check_teacher_matches` runs at the start of the stage, when
both networks exist, and compares their outputs on the example input before the first training step.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from edgekd.context import Context
from edgekd.errors import EdgekdError


def check_teacher_config(ctx: Context, stage: str) -> None:
    """Teacher present and its source resolvable: folder exists, module importable, built-in known, weights exist."""
    file = str(ctx.recipe_path)
    teacher = ctx.recipe.teacher
    if teacher is None:
        raise EdgekdError(f"stages.{stage} needs a teacher, and the recipe has none", file=file, key="teacher.source",
                          hint="add `teacher: {source: builtin:NAME | hf:PATH | py:module:function}`")
    scheme, _, ref = teacher.source.partition(":")
    if scheme == "hf":
        folder = Path(ref)
        if not folder.is_dir():
            raise EdgekdError(f"teacher folder not found: {ref}", file=file, key="teacher.source",
                              hint="hf:PATH must name a local Hugging Face model folder (nothing is downloaded)")
        if not (folder / "config.json").is_file():
            raise EdgekdError(f"not a Hugging Face model folder (no config.json): {ref}", file=file,
                              key="teacher.source")
    elif scheme == "py":
        module_name, _, fn_name = ref.rpartition(":")
        try:
            found = bool(module_name) and importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):
            found = False
        if not found or not fn_name:
            raise EdgekdError(f"teacher module not importable: {ref!r}", file=file, key="teacher.source",
                              hint="py:package.module:function, with the package on PYTHONPATH")
    elif scheme == "builtin":
        from edgekd.models.builtin import BUILTINS

        if ref not in BUILTINS:
            raise EdgekdError(f"unknown built-in teacher {ref!r}", file=file, key="teacher.source",
                              hint=f"allowed: {', '.join(sorted(BUILTINS))}")
    weights = teacher.kwargs.get("weights")
    if isinstance(weights, str) and not Path(weights).is_file():
        raise EdgekdError(f"teacher weights file not found: {weights}", file=file, key="teacher.kwargs.weights")


def check_teacher_matches(ctx: Context, stage: str) -> None:
    """Run student and teacher on the student's example input; the class counts (or embedding widths) must agree."""
    if ctx.teacher is None:
        raise EdgekdError(f"stages.{stage} needs a teacher", file=str(ctx.recipe_path), key="teacher.source")
    student, teacher = ctx.model, ctx.teacher
    if student.task != teacher.task:
        raise EdgekdError(f"the student is a {student.task!r} model and the teacher a {teacher.task!r} one",
                          file=str(ctx.recipe_path), key="teacher.task")
    student.module.eval()
    teacher.module.eval()
    with torch.no_grad():
        s_out = student.module(*student.example_inputs)
        try:
            t_out = teacher.module(*student.example_inputs)
        except Exception as exc:  # noqa: BLE001 - any failure here means the teacher cannot read the student's data
            raise EdgekdError(f"the teacher cannot run on the student's inputs "
                              f"({[tuple(t.shape) for t in student.example_inputs]}): {type(exc).__name__}: "
                              f"{str(exc)[:200]}", file=str(ctx.recipe_path), key="teacher.source") from exc
    what = "embedding width" if student.task == "sentence-embedding" else "output classes"
    if s_out.shape[-1] != t_out.shape[-1]:
        raise EdgekdError(f"teacher {what} ({t_out.shape[-1]}) != student {what} ({s_out.shape[-1]})",
                          file=str(ctx.recipe_path), key="teacher.source",
                          hint="KD compares the two distributions class by class; use teacher.num_labels / "
                               "model.num_labels so both predict the same classes")


def checkpoint_dir(ctx: Context, stage: str) -> Path:
    """out/<name>.work/checkpoints/<stage>: the work folder survives an interrupted run (the staging one does not)."""
    base = ctx.work_dir if ctx.work_dir is not None else ctx.out_dir
    return Path(base) / "checkpoints" / stage


def record(ctx: Context, stage: str, result, cfg, extra: dict | None = None, teacher: str | None = None) -> None:
    """Per-epoch metrics into ctx.metrics[stage], the loss-curve PNG into ctx.plots, notes as decisions.
    `teacher` names the teacher in the plot title when it is not ctx.teacher (the prune stage's unpruned student)."""
    from edgekd.train.plot import plot_history

    for note in result.notes:
        ctx.decide(stage, "training", "note", note)
    final = result.history[-1] if result.history else {}
    ctx.metrics[stage] = {
        "epochs": cfg.epochs, "steps": result.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "optimizer": cfg.optimizer, "lr_schedule": cfg.lr_schedule, "alpha": cfg.alpha,
        "temperature": cfg.temperature.model_dump(), "seconds": result.seconds,
        "resumed_from_step": result.resumed_from_step, "final_eval": final.get("eval"),
        "eval_metric": final.get("eval_metric"), "history": result.history, **(extra or {})}
    if result.history:
        path = plot_history(result.history, Path(ctx.out_dir) / f"{stage}_loss.png",
                            f"{stage}: {ctx.model.name} from {teacher or ctx.teacher.name}")
        ctx.plots[f"{stage}_loss"] = path
