"""export: write every artifact the profile's backend needs, plus fp32 references for size and parity baselines.

executorch-xnnpack -> .pte (and an ONNX for portability); onnxruntime -> .onnx; tensorrt -> Q/DQ ONNX, the trtexec
command and, where TensorRT imports, the engine. Causal LMs get their task's export (edgekd/tasks.py), with a KV cache.
"""

from __future__ import annotations

from edgekd.backends import FORMAT_RUNTIME
from edgekd.context import Artifact, Context
from edgekd.errors import EdgekdError
from edgekd.report.atomic import sha256_of


def _add(ctx: Context, path, fmt: str, precision: str, details: dict, reference: bool = False) -> Artifact:
    artifact = Artifact(name=path.name, path=path, format=fmt, runtime=FORMAT_RUNTIME[fmt], precision=precision,
                        bytes=path.stat().st_size, sha256=sha256_of(path), is_reference=reference, details=details)
    ctx.artifacts.append(artifact)
    return artifact


def _precision(ctx: Context) -> str:
    if ctx.quantized is None:
        return "fp32"
    return "mixed" if ctx.plan is not None and ctx.float_layers else "int8"


def run(ctx: Context, cfg) -> Context:
    """The task's export (edgekd/tasks.py): export_artifacts below, or the causal LM's KV-cache export."""
    return ctx.task_record.part("export")(ctx, cfg)


def export_artifacts(ctx: Context, cfg) -> Context:
    formats = cfg.formats or list(ctx.backend.formats)
    if "engine" in formats and "engine" not in ctx.backend.formats:
        raise EdgekdError("engine artifacts need the tensorrt backend", key="stages.export.formats",
                          hint=f"profile {ctx.profile.name} uses {ctx.profile.backend}")
    name, fp32 = ctx.model.name, ctx.model.module.eval()
    quantized, precision = ctx.quantized, _precision(ctx)
    out = ctx.out_dir
    if "pte" in formats:
        from edgekd.export.executorch import export_pte

        if quantized is not None:
            path = out / f"{name}.{precision}.pte"
            check_plan(ctx, _add(ctx, path, "pte", precision, export_pte(
                quantized, ctx.model.example_inputs, path, mixed=precision == "mixed", layers=_plan_layers(ctx))))
        if quantized is None or cfg.fp32_reference_artifacts:
            path = out / f"{name}.fp32.pte"
            _add(ctx, path, "pte", "fp32", export_pte(fp32, ctx.model.example_inputs, path),
                 reference=quantized is not None)
        _note_static_pte(ctx)
    if "onnx" in formats:
        _export_onnx(ctx, cfg, fp32, quantized, precision)
    if "engine" in formats:
        _export_tensorrt(ctx)
    return ctx


def _note_static_pte(ctx: Context) -> None:
    """The .pte is exported at the example shape: say so where the model declares axes that vary (text)."""
    varying = {n: a for n, a in ctx.model.dynamic_axes.items() if n in ctx.model.input_names
               and any(int(axis) > 0 for axis in a)}
    if varying:
        shapes = {n: list(t.shape) for n, t in zip(ctx.model.input_names, ctx.model.example_inputs)}
        for artifact in ctx.artifacts:
            if artifact.format == "pte":
                artifact.details["static_shape"] = shapes
        ctx.decide("export", ".pte inputs", f"static shape {shapes}",
                   "the .pte is exported at the example shape: pad inputs to it (the ONNX keeps batch and sequence "
                   "dynamic)")


def _export_onnx(ctx: Context, cfg, fp32, quantized, precision: str) -> None:
    from edgekd.export import onnx as onnx_export

    name, out = ctx.model.name, ctx.out_dir
    fp32_path = out / f"{name}.fp32.onnx"
    details = onnx_export.export_onnx(fp32, ctx.model, fp32_path, opset=cfg.opset,
                                      passes=ctx.backend.onnx_graph_passes, keep_layer_nodes=ctx.plan is not None)
    for pass_name, done in details.get("graph_passes", {}).items():
        if done.get("found") is False:  # nothing in this graph for the pass (attention in a CNN)
            continue
        ctx.decide("export", f"{fp32_path.name}: {pass_name}", "not done" if "not_done" in done else
                   ", ".join(f"{k} {v}" for k, v in (done.get("fused") or done).items()),
                   done.get("not_done", "onnxruntime graph pass (edgekd/export/ort_graph.py); the int8 ONNX is "
                                        "quantized from this graph"))
    _add(ctx, fp32_path, "onnx", "fp32", details, reference=quantized is not None)
    if quantized is None:
        return
    ptq_cfg = ctx.recipe.stages.ptq
    mode = ptq_cfg.onnx_mode if ptq_cfg is not None else "pt2e"  # after QAT the learned scales must be used
    if mode == "auto":
        mode = onnx_export.auto_mode(ctx.backend, ctx.model)
    int8_path = out / f"{name}.{precision}.onnx"
    if ctx.quantized_float is not None:  # dynamic QAT: its trained float weights, quantized by onnxruntime
        mode = "ort_dynamic"
        details = onnx_export.export_dynamic_int8(ctx.quantized_float, ctx.model, int8_path, cfg.opset,
                                                  ctx.profile.isa, _plan_exclude(ctx, fp32_path))
        ctx.decide("export", int8_path.name, "the QAT-trained weights quantized by onnxruntime (dynamic)",
                   "a dynamically quantized PT2E graph does not export to ONNX; the weights are the ones QAT trained "
                   "against a per-channel int8 grid, activations are quantized per call as in the .pte")
    elif mode == "pt2e":
        from edgekd.export.qdq_onnx import export_qdq_onnx

        axes, shapes = ctx.model.dynamic_axes, None
        if ctx.backend.optimization_profile:  # the axes and ranges of TensorRT's optimization profile
            from edgekd.export.tensorrt import lint_shapes, optimization_shapes, tensorrt_dynamic_axes

            axes = tensorrt_dynamic_axes(ctx.model, ctx.profile)
            shapes = lint_shapes(optimization_shapes(ctx.model, ctx.profile))
        details = export_qdq_onnx(quantized, ctx.model.example_inputs, int8_path,
                                  input_names=ctx.model.input_names, output_names=ctx.model.output_names,
                                  dynamic_axes=axes, shapes=shapes, activation_type=ctx.backend.qdq_activation_type,
                                  opset=(ctx.profile.tensorrt.opset if ctx.profile.tensorrt else cfg.opset),
                                  # TensorRT's readiness rules judge only a file TensorRT will parse
                                  lint=ctx.backend.device_runtime == "tensorrt")
    else:
        exclude = _plan_exclude(ctx, fp32_path)
        from edgekd.quant.ort import ort_quantize

        details = ort_quantize(fp32_path, int8_path, mode.removeprefix("ort_"), ctx.data.calibration.inputs,
                               exclude, input_names=ctx.model.input_names, isa=ctx.profile.isa)
        ctx.decide("export", int8_path.name, f"{details['format']} for isa {ctx.profile.isa}",
                   details["format_reason"])
        details.update(onnx_export.op_summary(int8_path), dynamic_axes=onnx_export.dynamic_dims(int8_path))
    details["mode"] = mode
    if mode != "pt2e":
        ctx.decide("export", int8_path.name, f"quantized by onnxruntime ({mode})",
                   "onnx_mode selects onnxruntime's quantizer; its scales are calibrated on the same real samples "
                   "but are not the PT2E scales of the .pte")
    check_plan(ctx, _add(ctx, int8_path, "onnx", precision, details))


def _plan_exclude(ctx: Context, fp32_path) -> list[str]:
    """ONNX node names of the layers the plan keeps in float: they stay out of onnxruntime's quantization."""
    if ctx.plan is None:
        return []
    from edgekd.quant.ort import plan_to_onnx_nodes
    from edgekd.quant.plan import quantizable_layers

    return sorted(plan_to_onnx_nodes(ctx.plan, fp32_path, quantizable_layers(ctx.model.module)))


def _plan_layers(ctx: Context) -> list[str] | None:
    if ctx.plan is None:
        return None
    from edgekd.quant.plan import quantizable_layers

    return quantizable_layers(ctx.model.module)


def check_plan(ctx: Context, artifact: Artifact) -> None:
    """Read every planned layer's precision back from the written file (rule 6 of docs/architecture.md: a layer the
    exporter did not hold at its planned precision is recorded, with both precisions)."""
    layers = _plan_layers(ctx)
    if layers is None:
        return
    from edgekd.quant.inspect import compare_with_plan, onnx_layer_precisions

    found = artifact.details.get("layers") or onnx_layer_precisions(artifact.path, layers)
    rows = compare_with_plan(ctx.plan, found, layers)
    artifact.details["layers"] = {n: found.get(n, {}) for n in layers}  # precision (and delegation) per layer
    artifact.details["plan_mismatches"] = [r for r in rows if not r["ok"]]
    dynamic = artifact.details.get("mode") == "ort_dynamic"
    for r in artifact.details["plan_mismatches"]:
        ctx.decide("export", f"{artifact.name}: {r['layer']}", f"{r['found']} (plan: {r['asked']})",
                   "onnxruntime's dynamic quantization covers MatMul/Gemm only" if dynamic else
                   "the exporter did not hold this layer at the plan's precision")


def _export_tensorrt(ctx: Context) -> None:
    from edgekd.export.tensorrt import write_tensorrt_artifacts

    qdq = [a for a in ctx.artifacts if a.format == "onnx" and not a.is_reference]
    if not qdq:
        raise EdgekdError("the TensorRT engine needs a quantized Q/DQ ONNX: add stages.ptq or stages.qat",
                          key="stages")
    details = write_tensorrt_artifacts(ctx, qdq[0].path)
    qdq[0].details["tensorrt"] = details
    if not details.get("engine_built"):
        ctx.decide("export", "tensorrt engine", "not built", details.get("reason", "tensorrt is not installed"))
        # The same Q/DQ ONNX, for TensorRT: verify records it as not run here; an ssh bench builds and times it on
        # the Jetson with trtexec (the flags of trtexec.sh).
        ctx.artifacts.append(Artifact(name=f"{qdq[0].name} (tensorrt)", path=qdq[0].path, format="onnx",
                                      runtime="tensorrt", precision=qdq[0].precision, bytes=qdq[0].bytes,
                                      sha256=qdq[0].sha256, details={"tensorrt": details}))
    else:
        engine = ctx.out_dir / details["engine"]
        _add(ctx, engine, "engine", qdq[0].precision, details)
