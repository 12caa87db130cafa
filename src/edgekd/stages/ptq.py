"""ptq: post-training int8 quantization with PT2E, calibrated on the recipe's real calibration split.

The converted model (ctx.quantized) is the single source of the int8 artifacts: .pte, Q/DQ ONNX and TensorRT all
carry its scales. Layers the precision plan keeps in floating point are left out of the quantizer.
"""

from __future__ import annotations

import time

from edgekd.context import Context
from edgekd.quant import pt2e


def float_layers(ctx: Context) -> list[str]:
    """Exact module names the precision plan (if any) keeps out of int8."""
    if ctx.plan is None:
        return []
    names = [n for n, _ in ctx.model.module.named_modules() if n]
    return sorted(ctx.plan.float_layers(names))


def run(ctx: Context, cfg) -> Context:
    started = time.perf_counter()
    skip = float_layers(ctx)
    quantizer = pt2e.make_quantizer(ctx.profile.backend, per_channel=cfg.per_channel, skip_modules=skip)
    prepared = pt2e.prepare(ctx.model.module, ctx.model.example_inputs, quantizer)
    samples = ctx.data.calibration.inputs
    count = pt2e.calibrate(prepared, samples, progress=ctx.progress)
    ctx.quantized = pt2e.convert(prepared)
    for name in skip:
        ctx.decide("ptq", name, "kept in floating point", "the precision plan assigns it a float precision")
    for node in quantizer.dropped:
        ctx.decide("ptq", node, "not quantized", "integer-valued op (index arithmetic); quantizing it breaks the graph")
    for node in quantizer.repaired:
        ctx.decide("ptq", node, "constant kept integer",
                   "the quantizer's scalar-to-tensor transform made an integer index constant float")
    ctx.metrics["ptq"] = {"scheme": cfg.scheme, "per_channel": cfg.per_channel, "calibration_samples": count,
                          "quantizer": pt2e.BACKEND_QUANTIZER[ctx.profile.backend], "float_layers": skip,
                          "seconds": time.perf_counter() - started}
    return ctx
