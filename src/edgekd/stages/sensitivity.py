"""Stage `sensitivity`: the error each quantizable layer alone adds when quantized (edgekd.quant.sensitivity).

Writes out/<name>/sensitivity.json (ranked, most sensitive first), a bar chart (ctx.plots["sensitivity"]) and puts
the result in ctx.sensitivity, which the mixed_precision stage solves from (and its table in the manifest's metrics).
"""

from __future__ import annotations

from edgekd.config.schema import SensitivityStage
from edgekd.context import Context
from edgekd.errors import EdgekdError

STAGE = "sensitivity"


def default_precisions(backend: str) -> list[str]:
    """int8 always; fp16 where the backend can hold a layer in fp16; int4 weight-only where the backend has it."""
    from edgekd.backends import get

    record = get(backend)
    precisions = ["int8"]
    if "fp16" in record.layer_precisions:
        precisions.append("fp16")
    if record.int4_weight_only:
        precisions.append("int4")
    return precisions


def check(ctx: Context, cfg: SensitivityStage | None) -> None:
    cfg = cfg or SensitivityStage()
    if ctx.recipe.data.calibration_samples < 1:
        raise EdgekdError("sensitivity needs calibration data", key="data.calibration_samples")


def run(ctx: Context, cfg: SensitivityStage | None) -> Context:
    from edgekd.quant import sensitivity as sens
    from edgekd.report.atomic import write_json

    cfg = cfg or SensitivityStage()
    if ctx.model is None or ctx.data is None:
        raise EdgekdError("the sensitivity stage needs the load stage's model and data", key="stages.sensitivity")
    precisions = list(cfg.precisions) if cfg.precisions else default_precisions(ctx.profile.backend)
    split = ctx.data.calibration
    count = min(cfg.samples, len(split))
    if count < cfg.samples:
        ctx.decide(STAGE, "samples", f"used {count}", f"only {count} calibration samples exist "
                                                      f"(stages.sensitivity.samples={cfg.samples})")
    labels = split.labels[:count] if split.labels is not None else None
    if labels is None:
        ctx.decide(STAGE, "task-metric delta", "not measured", "the calibration split has no labels")
    result = sens.analyze(ctx.model.module, split.inputs[:count], task=ctx.model.task, labels=labels,
                          precisions=precisions, batch_size=cfg.batch_size, progress=_progress(ctx))
    data = result.to_dict()
    ctx.sensitivity = result
    ctx.metrics[STAGE] = data  # the manifest's record
    write_json(ctx.out_dir / "sensitivity.json", data)
    try:
        ctx.plots[STAGE] = sens.bar_chart(result, ctx.out_dir / "sensitivity.png")
    except ImportError as exc:  # matplotlib is a dependency; a broken install is reported, not fatal
        ctx.decide(STAGE, "bar chart", "not drawn", f"matplotlib unavailable: {exc}")
    ctx.decide(STAGE, "method", "simulated per-layer quantization", result.method)
    return ctx


def _progress(ctx: Context):
    if ctx.progress is None:
        return None
    return lambda what: ctx.progress()  # same call convention as pt2e.calibrate: one tick per unit of work
