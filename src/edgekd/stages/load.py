"""load: build the student (and teacher) bundles and the real data splits; keep an fp32 reference copy.

The reference is taken before fusion and quantization so every artifact is judged against the untouched student.
"""

from __future__ import annotations

import copy

import torch

from edgekd.context import Context
from edgekd.data import load_data
from edgekd.errors import EdgekdError
from edgekd.models import load_bundle


def run(ctx: Context, cfg=None) -> Context:
    torch.manual_seed(ctx.recipe.seed)
    base = ctx.recipe_path.parent if ctx.recipe_path is not None else None  # relative paths: the recipe's folder
    try:
        ctx.model = load_bundle(ctx.recipe.model, ctx.recipe.data, key="model.source", base_dir=base)
        if ctx.recipe.teacher is not None:
            ctx.teacher = load_bundle(ctx.recipe.teacher, ctx.recipe.data, key="teacher.source", base_dir=base)
    except EdgekdError as exc:
        if not exc.file and ctx.recipe_path is not None:  # a key of the recipe: name the recipe file
            exc.file = str(ctx.recipe_path)
        raise
    ctx.task_record.part("after_load")(ctx)  # e.g. a causal LM's LoRA adapter, merged once (edgekd/tasks.py)
    ctx.data = load_data(ctx.recipe.data, ctx.model, base_dir=base)
    if ctx.data.calibration.inputs:
        first = ctx.data.calibration.inputs[0]
        # A real sample exports more faithfully than zeros (masks, value ranges) and fixes the static shapes.
        ctx.model.example_inputs = tuple(t.clone() for t in first)
    ctx.reference = copy.deepcopy(ctx.model.module).eval()
    params = sum(p.numel() for p in ctx.model.module.parameters())
    ctx.metrics["model"] = {"name": ctx.model.name, "task": ctx.model.task, "parameters": params,
                            "source": ctx.model.meta.get("source", ctx.recipe.model.source),
                            "inputs": {n: list(t.shape) for n, t in zip(ctx.model.input_names,
                                                                        ctx.model.example_inputs)}}
    ctx.metrics["data"] = {"source": ctx.data.source, "calibration": len(ctx.data.calibration),
                           "eval": len(ctx.data.eval), "train": len(ctx.data.train) if ctx.data.train else 0,
                           "calibration_from": ctx.data.calibration.description,
                           "eval_from": ctx.data.eval.description}
    return ctx
