"""ptq: post-training int8 quantization with PT2E, calibrated on the recipe's real calibration split.

The converted model (ctx.quantized) is the single source of the int8 artifacts: .pte, Q/DQ ONNX and TensorRT all
carry its scales. Layers the precision plan keeps in floating point are left out of the quantizer.
"""

from __future__ import annotations

import copy
import time

from edgekd.context import Context
from edgekd.quant import pt2e
from edgekd.train.replicas import fixed_threads


def float_layers(ctx: Context) -> list[str]:
    """Exact module names the precision plan (if any) keeps out of int8."""
    if ctx.plan is None:
        return []
    from edgekd.quant.plan import quantizable_layers

    # Only the layers a plan talks about: a container (`_blocks.7`) resolved through `_default: fp32` would
    # otherwise skip every int8 layer inside it (measured: a 7 MB plan became a 13.5 MB .pte).
    return sorted(ctx.plan.float_layers(quantizable_layers(ctx.model.module)))


def merge_keep_float(ctx: Context, cfg) -> None:
    """Fold `ptq.keep_float` into ctx.plan (creating one if no mixed_precision stage ran); names are validated."""
    if not cfg.keep_float:
        return
    from edgekd.quant.plan import PrecisionPlan, quantizable_layers

    where = f"{ctx.recipe_path} (stages.ptq.keep_float)"
    extra = PrecisionPlan(rules={"_default": "int8", **{name: "fp32" for name in cfg.keep_float}}, source=where)
    extra.validate(quantizable_layers(ctx.model.module), file=where)
    if ctx.plan is None:
        ctx.plan = extra
        ctx.plan.meta["made_by"] = "stages.ptq.keep_float"
    else:
        ctx.plan.rules = {**extra.rules, **ctx.plan.rules}
    ctx.plan.save(ctx.out_dir / "precision_plan.json")  # the plan a later run (or another exporter) can load


def record_quantizer_decisions(ctx: Context, stage: str, quantizer, skip: list[str]) -> None:
    """What the quantizer left out or changed, with the reason, for the report (ptq and qat alike)."""
    for name in skip:
        ctx.decide(stage, name, "kept in floating point", "the precision plan assigns it a float precision")
    for node in quantizer.dropped:
        ctx.decide(stage, node, "not quantized", "integer-valued op (index arithmetic); quantizing it breaks the graph")
    for node in quantizer.clamps_fused:
        ctx.decide(stage, node, "quantized after the clamp", "ReLU6 fused into its producer: the activation gets "
                   "its real 0..6 range instead of the pre-clamp range")
    for node in quantizer.pads_shared:
        ctx.decide(stage, node, "zero pad quantized with its input's scale", "runs as an int8 pad that XNNPACK folds "
                   "into the next convolution, instead of Convert -> fp32 pad -> Convert")
    for node in quantizer.embeddings_quantized:
        ctx.decide(stage, node, "int8 weight-only table (per row)", "embedding tables are most of a text model's "
                   "bytes; gathered rows are dequantized, indices stay integer")
    for node in quantizer.repaired:
        ctx.decide(stage, node, "constant kept integer",
                   "the quantizer's scalar-to-tensor transform made an integer index constant float")


def record_unrepresentable(ctx: Context, stage: str, observers: list[str]) -> None:
    for name in observers:
        ctx.decide(stage, name, "kept in floating point", "calibrated range beyond +-1e6 (an additive attention "
                   "mask): no int8 scale can hold it; the backend runs it in float")


def activation_mode(ctx: Context, cfg) -> str:
    if cfg.activations != "auto":
        return cfg.activations
    text = "input_ids" in ctx.model.input_names
    return ctx.backend.text_activations if text else "static"


# Calibrated ranges come from float reductions whose rounding depends on the intra-op thread count (the demo's
# EfficientNet int8 .pte differed between 1 and 2 threads): one count everywhere makes the artifact the same file on
# every host of an ISA, which the size-regression gate and its hashes rely on.
CALIBRATION_THREADS = 1


def quantize(ctx: Context, module, cfg, skip: list[str], dynamic: bool, progress=None):
    """The one PTQ sequence: the profile backend's quantizer -> prepare -> calibrate on the calibration split -> drop
    what no int8 grid holds -> convert. Used by this stage, by the qat stage's PTQ baseline (so the baseline is exactly
    what `stages.ptq` would give) and by dynamic QAT's convert of the trained weights (edgekd/stages/qat.py).
    `module` is not modified. Returns (converted, quantizer, calibration count, dropped observer names)."""
    quantizer = pt2e.make_quantizer(ctx.profile.backend, per_channel=cfg.per_channel, skip_modules=skip,
                                    dynamic=dynamic, embeddings=dynamic)
    examples, shapes = ctx.model.example_inputs, None
    if ctx.backend.optimization_profile:  # keep batch/sequence axes dynamic through to the Q/DQ ONNX
        from edgekd.export.tensorrt import quantization_export_shapes

        shapes, examples = quantization_export_shapes(ctx.model, ctx.profile)
    prepared = pt2e.prepare(copy.deepcopy(module), examples, quantizer, dynamic_shapes=shapes)
    with fixed_threads(CALIBRATION_THREADS):
        count = pt2e.calibrate(prepared, ctx.data.calibration.inputs, progress=progress)
    dropped = pt2e.drop_unrepresentable_observers(prepared)
    return pt2e.convert(prepared), quantizer, count, dropped


def run(ctx: Context, cfg) -> Context:
    started = time.perf_counter()
    merge_keep_float(ctx, cfg)
    skip = ctx.float_layers = float_layers(ctx)
    dynamic = activation_mode(ctx, cfg) == "dynamic"
    if dynamic:
        ctx.decide("ptq", "activations", "quantized dynamically (per call)",
                   "text encoder on ExecuTorch: static per-tensor ranges lose the residual stream's outlier channels")
    ctx.quantized, quantizer, count, dropped = quantize(ctx, ctx.model.module, cfg, skip, dynamic,
                                                        progress=ctx.progress)
    record_unrepresentable(ctx, "ptq", dropped)
    record_quantizer_decisions(ctx, "ptq", quantizer, skip)
    ctx.metrics["ptq"] = {"scheme": cfg.scheme, "per_channel": cfg.per_channel, "calibration_samples": count,
                          "quantizer": ctx.backend.quantizer, "float_layers": skip,
                          "activations": "dynamic" if dynamic else "static",
                          "seconds": time.perf_counter() - started}
    return ctx
