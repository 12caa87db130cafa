"""TensorRT artifacts for Jetson: the trtexec command that builds the engine, and the engine itself where TensorRT
imports.

Inputs: the symmetric int8 Q/DQ ONNX written by edgekd.export.qdq_onnx (zero point 0, per-channel weights, float
bias, dynamic axes) and the precision plan. Outputs in the run folder:
- `trtexec.sh`: ALWAYS written. The exact build command for the device (`--int8 --fp16`, min/opt/max shapes,
  `--precisionConstraints=obey --layerPrecisions=...` for the layers the plan keeps in float, timing cache), so a
  field engineer can build the engine on the Jetson by hand; TensorRT engines are specific to the GPU and TensorRT
  version they were built with, so the Jetson is where the engine should be built anyway.
- `<name>.engine` + `<name>.engine.build.log` + `timing.cache`: only when `import tensorrt` works here; built with the
  same settings through the builder API (INT8 + FP16 flags, OBEY_PRECISION_CONSTRAINTS, per-layer precision,
  one optimization profile, timing cache). Otherwise the details say plainly that no engine was built or timed.

Optimization-profile shapes come from the device profile (`tensorrt.shapes.<input>`), else they are derived from the
model's example inputs and the profile's batch sizes; every dynamic ONNX dimension needs a range (lint TRT009).
Layer names: TensorRT's ONNX parser names each layer after its ONNX node, so plan layers map to node names
(edgekd.quant.ort.plan_to_trt_layers) and trtexec's own per-layer profile shows the same names.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.report.atomic import atomic_path

TRTEXEC = "trtexec"
SCRIPT_NAME = "trtexec.sh"
TIMING_CACHE = "timing.cache"
TRT_PRECISION = {"fp16": "fp16", "fp32": "fp32"}


# --------------------------------------------------------------------------------------------- shapes
def optimization_shapes(bundle, profile) -> dict[str, dict]:
    """{input: {"min": [...], "opt": [...], "max": [...], "source": "profile"|"derived"}} for every model input.

    Profile entries win (they may make more axes dynamic, e.g. the sequence axis of a text model); otherwise the
    bundle's dynamic axes get 1 .. max(profile.batch_sizes) (opt: the first batch size) and every other axis the
    example size."""
    given = dict(profile.tensorrt.shapes) if profile.tensorrt is not None else {}
    batches = sorted(profile.batch_sizes or [1])
    out = {}
    for name, tensor in zip(bundle.input_names, bundle.example_inputs):
        if name in given:
            spec = given[name]
            out[name] = {"min": list(spec.min), "opt": list(spec.opt), "max": list(spec.max), "source": "profile"}
            continue
        dims = list(tensor.shape)
        axes = {int(a) for a in (bundle.dynamic_axes.get(name) or {})}
        lo, opt, hi = list(dims), list(dims), list(dims)
        for axis in axes:
            if axis == 0:
                lo[0], opt[0], hi[0] = 1, (profile.batch_sizes or [1])[0], max(batches[-1], 1)
            else:
                lo[axis] = 1
        out[name] = {"min": lo, "opt": opt, "max": hi, "source": "derived"}
    return out


def tensorrt_dynamic_axes(bundle, profile) -> dict[str, dict[int, str]]:
    """The bundle's dynamic axes plus every axis where the profile's min and max differ (a sequence axis), named
    after the bundle's name for that axis or `dim<axis>` (inputs sharing an axis share the name)."""
    out = {name: {int(a): n for a, n in axes.items()} for name, axes in (bundle.dynamic_axes or {}).items()}
    for name, spec in optimization_shapes(bundle, profile).items():
        for axis, (lo, hi) in enumerate(zip(spec["min"], spec["max"])):
            if lo != hi:
                out.setdefault(name, {}).setdefault(axis, "batch" if axis == 0 else f"dim{axis}")
    return out


def quantization_export_shapes(bundle, profile):
    """(dynamic_shapes, example_inputs) for torch.export before PT2E prepare, so the converted model -- and so the
    Q/DQ ONNX -- keeps the axes TensorRT's optimization profile varies."""
    from edgekd.export.qdq_onnx import dynamic_shapes_for_axes

    axes = tensorrt_dynamic_axes(bundle, profile)
    inputs = {n: a for n, a in axes.items() if n in bundle.input_names}
    return dynamic_shapes_for_axes(inputs, bundle.input_names, bundle.example_inputs)


def lint_shapes(shapes: dict) -> dict:
    """The shape ranges in the form edgekd.lint's TRT009 reads."""
    return {n: {k: s[k] for k in ("min", "opt", "max")} for n, s in shapes.items()}


# --------------------------------------------------------------------------------------------- plan
def layer_precisions(ctx, onnx_path: Path) -> dict[str, str]:
    """{ONNX node / TensorRT layer name: fp16|fp32} for the layers the plan keeps in floating point ({} without a
    plan). Raises (exit 2) when a float layer has no node in the file: it would silently run in int8."""
    if ctx.plan is None:
        return {}
    from edgekd.quant.ort import plan_to_trt_layers
    from edgekd.quant.plan import quantizable_layers

    return plan_to_trt_layers(ctx.plan, onnx_path, quantizable_layers(ctx.model.module))


# --------------------------------------------------------------------------------------------- trtexec
def _dims(values) -> str:
    return "x".join(str(int(v)) for v in values)


def shape_flags(shapes: dict) -> list[str]:
    """--minShapes/--optShapes/--maxShapes for the inputs with a range (static inputs need none)."""
    dynamic = {n: s for n, s in shapes.items() if s["min"] != s["max"] or s["min"] != s["opt"]}
    if not dynamic:
        return []
    return [f"--{kind}Shapes=" + ",".join(f"{n}:{_dims(s[key])}" for n, s in dynamic.items())
            for kind, key in (("min", "min"), ("opt", "opt"), ("max", "max"))]


def trtexec_build_argv(onnx: str, engine: str, shapes: dict, layers: dict[str, str], *, fp16: bool = True,
                       workspace_mb: int = 1024, timing_cache: str = TIMING_CACHE, binary: str = TRTEXEC) -> list[str]:
    """The trtexec command that builds the engine from the Q/DQ ONNX with the plan's per-layer precisions.

    `--int8` lets TensorRT use the Q/DQ scales (explicit quantization; no calibrator), `--fp16` lets the float
    parts run in half precision; a plan layer kept in fp16/fp32 is pinned with --layerPrecisions and enforced
    with --precisionConstraints=obey (without obey TensorRT treats the spec as a preference)."""
    argv = [binary, f"--onnx={onnx}", f"--saveEngine={engine}", "--int8"]
    if fp16:
        argv.append("--fp16")
    argv += shape_flags(shapes)
    if layers:
        bad = sorted({p for p in layers.values() if p not in TRT_PRECISION})
        if bad:
            raise EdgekdError(f"TensorRT per-layer precision must be fp16 or fp32, got {bad}", key="plan")
        argv += ["--precisionConstraints=obey",
                 "--layerPrecisions=" + ",".join(f"{n}:{TRT_PRECISION[p]}" for n, p in sorted(layers.items()))]
    argv += [f"--memPoolSize=workspace:{int(workspace_mb)}M", f"--timingCacheFile={timing_cache}",
             "--skipInference"]
    return argv


def write_trtexec_script(path: Path, argv: list[str], note: str) -> Path:
    """A POSIX shell script that runs `argv` from its own folder (paths in it are relative), written atomically."""
    body = ["#!/bin/sh"] + [f"# {line}".rstrip() for line in note.splitlines()]
    body += ['# TRTEXEC=/path/to/trtexec overrides the binary (JetPack: /usr/src/tensorrt/bin/trtexec).',
             "set -eu", 'cd "$(dirname "$0")"',
             'TRTEXEC="${TRTEXEC:-' + argv[0] + '}"',
             '"$TRTEXEC" ' + " \\\n    ".join(shlex.quote(a) for a in argv[1:]), ""]
    with atomic_path(Path(path)) as tmp:
        tmp.write_text("\n".join(body))
        tmp.chmod(0o755)
    return Path(path)


# --------------------------------------------------------------------------------------------- builder
def tensorrt_available() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return False, f"tensorrt is not importable here ({type(exc).__name__}: {str(exc)[:120]})"
    return True, ""


def build_engine(onnx_path: Path, engine_path: Path, shapes: dict, layers: dict[str, str], *, fp16: bool = True,
                 workspace_mb: int = 1024, timing_cache: Path | None = None, log_path: Path | None = None) -> dict:
    """Build and save the engine with the TensorRT builder API, the same settings as trtexec_build_argv.

    API names as documented for TensorRT 8.6/10 Python: Builder, OnnxParser, BuilderFlag.INT8/FP16/
    OBEY_PRECISION_CONSTRAINTS, ILayer.precision / set_output_type, create_optimization_profile().set_shape,
    create_timing_cache / set_timing_cache, set_memory_pool_limit(MemoryPoolType.WORKSPACE), build_serialized_network.
    """
    import tensorrt as trt

    lines: list[str] = []

    class _Log(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            lines.append(f"[{severity}] {msg}")

    logger = _Log()
    started = time.perf_counter()
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required before TensorRT 10, ignored after
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        _write_log(log_path, lines + errors)
        raise EdgekdError(f"TensorRT's ONNX parser rejected the model: {'; '.join(errors)[:400]}", file=str(onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    config.set_flag(trt.BuilderFlag.INT8)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    pinned = []
    if layers:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        kind = {"fp16": trt.float16, "fp32": trt.float32}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in layers:
                layer.precision = kind[layers[layer.name]]
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, kind[layers[layer.name]])
                pinned.append(layer.name)
        missing = sorted(set(layers) - set(pinned))
        if missing:
            raise EdgekdError(f"plan layers not found among TensorRT's layers: {', '.join(missing[:5])}",
                              file=str(onnx_path), key="plan")
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        spec = shapes.get(tensor.name)
        if spec is not None:
            profile.set_shape(tensor.name, spec["min"], spec["opt"], spec["max"])
    config.add_optimization_profile(profile)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        _write_log(log_path, lines)
        raise EdgekdError("TensorRT could not build the engine (see the build log)", file=str(log_path or onnx_path))
    with atomic_path(Path(engine_path)) as tmp:
        tmp.write_bytes(bytes(serialized))
    if timing_cache:
        with atomic_path(Path(timing_cache)) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    seconds = time.perf_counter() - started
    lines.append(f"engine built in {seconds:.1f} s with TensorRT {trt.__version__}")
    _write_log(log_path, lines)
    return {"tensorrt_version": trt.__version__, "build_seconds": seconds, "pinned_layers": pinned}


def _write_log(path: Path | None, lines: list[str]) -> None:
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------- stage entry
def write_tensorrt_artifacts(ctx, onnx_path: Path, *, parity_samples: int = 16) -> dict:
    """Write trtexec.sh (always), build the engine where TensorRT imports, check the Q/DQ ONNX against the
    converted PT2E model in onnxruntime; returns the details recorded in the manifest."""
    onnx_path = Path(onnx_path)
    out = Path(ctx.out_dir)
    profile = ctx.profile
    trt_cfg = profile.tensorrt
    fp16 = trt_cfg.fp16 if trt_cfg is not None else True
    workspace = trt_cfg.workspace_mb if trt_cfg is not None else 1024
    shapes = optimization_shapes(ctx.model, profile)
    layers = layer_precisions(ctx, onnx_path)
    engine_name = onnx_path.with_suffix(".engine").name
    argv = trtexec_build_argv(onnx_path.name, engine_name, shapes, layers, fp16=fp16, workspace_mb=workspace)
    note = (f"Build the TensorRT engine for {profile.name} from {onnx_path.name} (written by edgekd).\n"
            "Run it on the Jetson, next to the ONNX: engines are specific to the GPU and TensorRT version.\n"
            f"Per-layer precision from the plan: {len(layers)} layer(s) pinned to float.")
    script = write_trtexec_script(out / SCRIPT_NAME, argv, note)
    details: dict = {"trtexec_script": script.name, "trtexec_command": shlex.join(argv),
                     "optimization_shapes": shapes, "layer_precisions": layers, "fp16": fp16,
                     "workspace_mb": workspace, "engine_built": False, "engine_timed": False}
    if ctx.quantized is not None and ctx.data is not None and ctx.data.eval.inputs:
        from edgekd.runtime.onnx_checks import ort_parity

        details["onnxruntime_vs_pt2e"] = ort_parity(ctx.quantized, onnx_path, ctx.data.eval.inputs[:parity_samples])
    ok, why = tensorrt_available()
    if not ok:
        details["reason"] = (f"TensorRT engine NOT built and NOT timed: {why}. Run {SCRIPT_NAME} on the Jetson to "
                             "build it; `edgekd bench --runner ssh` times it there with trtexec.")
        return details
    engine = out / engine_name
    built = build_engine(onnx_path, engine, shapes, layers, fp16=fp16, workspace_mb=workspace,
                         timing_cache=out / TIMING_CACHE, log_path=out / f"{engine_name}.build.log")
    details.update(built, engine=engine.name, engine_built=True, build_log=f"{engine_name}.build.log",
                   timing_cache=TIMING_CACHE,
                   reason="engine built here; it was not timed here (edgekd bench times it on the Jetson)")
    return details
