"""distill: fp32 knowledge distillation of the student from recipe.teacher, before fusion and quantization.

Loss = alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE(labels), plus optional hidden-state matching;
everything is in edgekd.train. The distilled student replaces the fp32 reference taken at load: every later
artifact is judged against the network that was actually shipped, not the untrained one.
"""

from __future__ import annotations

import copy

from edgekd.context import Context
from edgekd.train.loop import resolve_device, train_kd
from edgekd.train.support import check_teacher_config, check_teacher_matches, checkpoint_dir, record


def check(ctx: Context, cfg) -> None:
    check_teacher_config(ctx, "distill")


def run(ctx: Context, cfg) -> Context:
    check_teacher_matches(ctx, "distill")
    device = resolve_device(cfg.device, ctx.device)
    student = ctx.model.module
    result = train_kd(student, ctx.teacher.module, ctx.data.train, ctx.data.eval, cfg, task=ctx.model.task,
                      stage="distill", ckpt_dir=checkpoint_dir(ctx, "distill"), device=device, resume=ctx.resume,
                      example_inputs=ctx.model.example_inputs, progress=ctx.progress)
    student.to("cpu").eval()
    ctx.teacher.module.to("cpu")
    ctx.reference = copy.deepcopy(student).eval()
    ctx.decide("distill", "fp32 reference", "replaced by the distilled student",
               "artifacts are compared with the network that was trained, not the one loaded")
    if result.projections is not None:
        ctx.decide("distill", "hidden-state projections", "not exported",
                   f"{sum(p.numel() for p in result.projections.parameters())} parameters used only for training")
    record(ctx, "distill", result, cfg, {"device": str(device),
                                         "hidden_pairs": [p.model_dump() for p in cfg.hidden.pairs]
                                         if cfg.hidden else []})
    return ctx
