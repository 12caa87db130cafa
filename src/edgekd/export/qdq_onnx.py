"""TensorRT-ready Q/DQ ONNX from a converted PT2E model (the same scales as the .pte).

Path: converted GraphModule -> torch.onnx (dynamo, opset >= 18; or TorchScript with Q/DQ symbolics for opset
13..17, older JetPack) -> exact graph rewrites that help TensorRT fuse -> TensorRT readiness lint.

Why onnxruntime can show cosine 0.78 for a Q/DQ ONNX whose .pte gives 0.993: the ONNX is right; onnxruntime's
x86 int8 kernels are not. At ORT_ENABLE_EXTENDED and above onnxruntime fuses DQ->Conv->Q into QLinearConv and, on x86,
converts s8 activations to u8 (QDQS8ToU8Transformer); the u8 x s8 AVX2 path (vpmaddubsw, without VNNI) saturates
int16 partial sums. Executing the same file with exact Q/DQ semantics (graph optimizations at BASIC, where
DequantizeLinear -> float op -> QuantizeLinear run as written) matches the converted PyTorch model; so parity uses
the exact session (runtime/sessions.py), and `ort_parity` (runtime/onnx_checks.py) reports the default session's
number beside it. TensorRT accumulates in int32 and does not have that saturation.

The graph rewrites that help TensorRT fuse live in export/tensorrt_rewrites.py; the parity sessions in
runtime/sessions.py and runtime/onnx_checks.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.export.onnx import drop_source_traces
from edgekd.export.tensorrt_rewrites import make_names_unique, rewrite_for_tensorrt, same_zero_point
from edgekd.report.atomic import atomic_path

DYNAMO_MIN_OPSET = 18


# --------------------------------------------------------------------------------------------- export
def export_qdq_onnx(converted: torch.fx.GraphModule, example_inputs: tuple, path: Path, *, input_names: list[str],
                    output_names: list[str], dynamic_axes: dict, opset: int = 18, shapes: dict | None = None,
                    lint: bool = True, polygraphy: bool = True, activation_type: str = "int8") -> dict:
    """Export `converted` (convert_pt2e output) to a Q/DQ ONNX at `path`; returns counts, rewrites and lint summary.
    `activation_type` "uint8" stores asymmetric int8 activations as uint8 (activations_as_uint8; the backend
    record's qdq_activation_type).

    `dynamic_axes` is {input_name: {axis: dim_name}}. The converted model must itself have been exported with those
    axes dynamic (prepare with `dynamic_shapes`); a model specialised to the example shapes exports static, and the
    dropped axes are reported under "dynamic_axes_dropped" (nothing is dropped silently).
    """
    import onnx

    path = Path(path)
    if opset < 13:
        raise EdgekdError(f"opset {opset} is too old for per-channel Q/DQ", key="tensorrt.opset",
                          hint="allowed: 13..23 (18+ via the dynamo exporter, 13..17 via TorchScript)")
    exporter = "dynamo" if opset >= DYNAMO_MIN_OPSET else "torchscript"
    with atomic_path(path) as tmp:
        if exporter == "dynamo":
            _export_dynamo(converted, example_inputs, tmp, input_names, output_names, dynamic_axes, opset)
        else:
            _export_torchscript(converted, example_inputs, tmp, input_names, output_names, dynamic_axes, opset)
        model = onnx.load(str(tmp))
        got_opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if got_opset != opset:  # torch's down-converter gives up silently (e.g. "No Adapter To Version 17 for Pad")
            raise EdgekdError(f"asked for opset {opset}, the exporter wrote opset {got_opset}", file=str(path),
                              key="tensorrt.opset", hint="use 18 (dynamo) or 13..17 (TorchScript path)")
        renamed = make_names_unique(model)
        model, rewrites = rewrite_for_tensorrt(model)
        if activation_type == "uint8":
            activations_as_uint8(model, rewrites)
        rewrites += renamed
        if rewrites:  # the exporter's value_info describes the graph before the rewrites (e.g. padded shapes)
            used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
            kept = [i for i in model.graph.initializer if i.name in used]  # e.g. the pads of a folded Pad
            del model.graph.initializer[:]
            model.graph.initializer.extend(kept)
            del model.graph.value_info[:]
            try:
                model = onnx.shape_inference.infer_shapes(model)
            except Exception:  # noqa: BLE001 - intermediate shapes are optional in ONNX
                pass
        _name_dynamic_dims(model, dynamic_axes)
        drop_source_traces(model)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    details = {"exporter": exporter, "opset": opset, **qdq_counts(model), "rewrites": rewrites,
               "rewrite_counts": dict(Counter(r["rewrite"] for r in rewrites)),
               "dynamic_axes": _dynamic_dims(model), "dynamic_axes_dropped": _dropped(model, dynamic_axes)}
    if lint:
        from edgekd.lint import lint_onnx

        details["lint"] = lint_onnx(path, "tensorrt", shapes=shapes, polygraphy=polygraphy).summary()
    return details


def activations_as_uint8(model, rewrites: list) -> None:
    """Every Q whose zero point is an int8 scalar, with only DQ consumers, becomes a uint8 Q/DQ pair with the zero
    point + 128: the same real values (q + 128 - (z + 128) = q - z, and the clamp range moves with it). onnxruntime's
    x86 QDQ fusion needs uint8 activations; its own s8 -> u8 conversion skips a Q read by several DQs (a residual
    add's input), which left 14 of EfficientNet-Lite0's 47 int8 convs and all 9 adds in float between Q/DQ pairs.
    Weights (DQ of an initializer) stay int8, as onnxruntime's u8 x s8 kernels take them."""
    from onnx import numpy_helper

    from edgekd.lint.graph import index_graph

    idx = index_graph(model, infer_types=False)
    made: dict[str, str] = {}
    count = 0
    for q in list(model.graph.node):
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or q.output[0] in idx.graph_outputs:
            continue
        zero = idx.const(q.input[2])
        dqs = idx.users(q.output[0])
        if zero is None or zero.dtype != np.int8 or zero.size != 1 or not dqs:
            continue
        if any(d.op_type != "DequantizeLinear" or len(d.input) < 3 or d.input[0] != q.output[0]
               or not same_zero_point(idx, d, q) for d in dqs):
            continue
        for node in (q, *dqs):
            name = node.input[2]
            if name not in made:
                made[name] = f"{name}_uint8"
                value = (idx.const(name).astype(np.int16) + 128).astype(np.uint8)
                model.graph.initializer.append(numpy_helper.from_array(value, made[name]))
            node.input[2] = made[name]
        count += 1
    if count:  # export_qdq_onnx re-infers value_info after any rewrite (the Q outputs' type changed)
        rewrites.append({"rewrite": "activations_as_uint8", "node": f"{count} Q/DQ pairs",
                         "detail": "int8 zero point z -> uint8 z + 128 (same values; onnxruntime's x86 QDQ fusion)"})


def dynamic_shapes_for_axes(dynamic_axes: dict, input_names: list[str], example_inputs: tuple):
    """torch.export dynamic_shapes (Dim.AUTO on every named axis) and example inputs in which every
    dynamic axis has size >= 2 (torch.export specialises sizes 0 and 1). Use the same pair for prepare() so the
    converted model stays dynamic."""
    if not dynamic_axes:
        return None, tuple(example_inputs)
    shapes, examples = [], []
    for name, tensor in zip(input_names, example_inputs):
        axes = {int(a): n for a, n in (dynamic_axes.get(name) or {}).items()}
        spec = {}
        for axis in axes:
            # Dim.AUTO lets export derive ranges (BERT's seq <= max_position_embeddings) and equalities between
            # inputs; the dims get the caller's names back in the ONNX (_name_dynamic_dims).
            spec[axis] = torch.export.Dim.AUTO
            if tensor.shape[axis] < 2:
                tensor = torch.cat([tensor, tensor], dim=axis)
        shapes.append(spec or None)
        examples.append(tensor)
    return tuple(shapes), tuple(examples)


def _export_dynamo(converted, example_inputs, tmp: Path, input_names, output_names, dynamic_axes, opset) -> None:
    shapes, examples = dynamic_shapes_for_axes(dynamic_axes, input_names, example_inputs)
    try:
        try:
            program = torch.onnx.export(converted, examples, dynamo=True, opset_version=opset, external_data=False,
                                        input_names=input_names, output_names=output_names, dynamic_shapes=shapes,
                                        verbose=False)
        except Exception:  # noqa: BLE001 - a specialised (static) converted model rejects dynamic shapes
            if shapes is None:
                raise
            program = torch.onnx.export(converted, tuple(example_inputs), dynamo=True, opset_version=opset,
                                        external_data=False, input_names=input_names, output_names=output_names,
                                        verbose=False)
        program.save(str(tmp), external_data=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise EdgekdError(f"Q/DQ ONNX export failed: {type(exc).__name__}: {str(exc)[:400]}", file=str(tmp)) from exc


# ----------------------------------------------------------------- TorchScript path (opset 13..17)
def _register_qdq_symbolics(opset: int) -> None:
    """TorchScript has no ONNX symbolic for torchao's quantized_decomposed ops; map them to Q/DQ (opset >= 13)."""
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx import symbolic_helper as sh

    def const(g, value, dtype):
        return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))

    def q(g, x, scale, zp, qmin, qmax, dtype):
        return g.op("QuantizeLinear", x, const(g, sh._get_const(scale, "f", "scale"), torch.float32),
                    const(g, sh._get_const(zp, "i", "zero_point"), torch.int8))

    def dq(g, x, scale, zp, qmin, qmax, dtype, out_dtype=None):
        return g.op("DequantizeLinear", x, const(g, sh._get_const(scale, "f", "scale"), torch.float32),
                    const(g, sh._get_const(zp, "i", "zero_point"), torch.int8))

    def dq_channel(g, x, scales, zps, axis, qmin, qmax, dtype, out_dtype=None):
        return g.op("DequantizeLinear", x, scales, g.op("Cast", zps, to_i=3),  # 3: INT8
                    axis_i=sh._get_const(axis, "i", "axis"))

    for name, fn in (("quantize_per_tensor", q), ("dequantize_per_tensor", dq), ("dequantize_per_channel", dq_channel)):
        register_custom_op_symbolic(f"quantized_decomposed::{name}", fn, opset)


def _export_torchscript(converted, example_inputs, tmp: Path, input_names, output_names, dynamic_axes, opset):
    """Opset 13..17 for TensorRT parsers that predate opset 18. Measured: torch's own TorchScript exporter fails on
    a PT2E model ("unrecognized namespace quantized_decomposed"); with the symbolics above it works."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    _register_qdq_symbolics(opset)
    allow_exported_model_train_eval(converted)  # the TorchScript exporter calls .eval()
    try:
        torch.onnx.export(converted, tuple(example_inputs), str(tmp), dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes={k: {int(a): n for a, n in v.items()} for k, v in (dynamic_axes or {}).items()})
    except Exception as exc:  # noqa: BLE001
        raise EdgekdError(f"opset {opset} export (TorchScript exporter) failed: {type(exc).__name__}: "
                          f"{str(exc)[:400]}", file=str(tmp), key="tensorrt.opset",
                          hint="use opset 18 (dynamo exporter) if the target's TensorRT parser accepts it") from exc
    _fold_constants(tmp)


def _fold_constants(path: Path) -> None:
    """The TorchScript exporter leaves shape arithmetic (Pad's ConstantOfShape/Concat/Slice) and Cast of constant
    zero points; onnx-graphsurgeon folds them so the rewrites and the lint see constants."""
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(onnx.load(str(path)))
    graph.fold_constants().cleanup().toposort()
    onnx.save(gs.export_onnx(graph), str(path))


# --------------------------------------------------------------------------------------------- facts
def qdq_counts(model) -> dict:
    ops = Counter(n.op_type for n in model.graph.node)
    return {"quantize_linear": ops.get("QuantizeLinear", 0), "dequantize_linear": ops.get("DequantizeLinear", 0),
            "nodes": sum(ops.values()), "ops": dict(ops.most_common())}


def _dynamic_dims(model) -> dict:
    out = {}
    for inp in model.graph.input:
        dims = {i: d.dim_param or "?" for i, d in enumerate(inp.type.tensor_type.shape.dim) if not d.HasField("dim_value")}
        if dims:
            out[inp.name] = dims
    return out


def _name_dynamic_dims(model, dynamic_axes: dict) -> None:
    """Give dynamic dims the names the caller chose (the exporter invents s0, s1...), graph-wide and consistently."""
    rename = {}
    for inp in model.graph.input:
        for axis, name in (dynamic_axes or {}).get(inp.name, {}).items():
            dims = inp.type.tensor_type.shape.dim
            if int(axis) < len(dims) and dims[int(axis)].dim_param:
                rename[dims[int(axis)].dim_param] = name
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]


def _dropped(model, dynamic_axes: dict) -> dict:
    got = {}
    for vi in list(model.graph.input) + list(model.graph.output):  # outputs are named in dynamic_axes too
        got[vi.name] = {i for i, d in enumerate(vi.type.tensor_type.shape.dim) if not d.HasField("dim_value")}
    out = {}
    for name, axes in (dynamic_axes or {}).items():
        missing = {int(a): n for a, n in axes.items() if int(a) not in got.get(name, {})}
        if missing:
            out[name] = {"axes": missing, "reason": "the converted PT2E model is specialised to the example shape; "
                                                    "prepare it with dynamic_shapes (dynamic_shapes_for_axes)"}
    return out
