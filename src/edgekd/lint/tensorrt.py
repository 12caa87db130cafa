"""TensorRT readiness rules for explicitly quantized (Q/DQ) ONNX networks.

Why each rule exists (TensorRT's explicit quantization, as documented in the TensorRT developer guide):
- TensorRT's int8 is symmetric: a QuantizeLinear/DequantizeLinear with a non-zero zero point is rejected by the
  ONNX parser (TRT001).
- Bias is added in float by TensorRT's fused int8 kernels; an int32 DequantizeLinear (onnxruntime's QDQ bias
  format) is not a pattern TensorRT fuses (TRT002).
- Weight scales must be per output channel on the right axis (Conv: 0, ConvTranspose: 1, Gemm: 0 with transB=1
  else 1, MatMul: last) or the scale broadcasts over the wrong dimension (TRT003).
- A Q not followed by a DQ, or a DQ whose result never reaches a compute op, leaves TensorRT with a lone
  quantize/dequantize layer: an int8<->float reformat kernel and lost fusion (TRT004, TRT005).
- Q/DQ only apply to floating point tensors (TRT006).
- Ops TensorRT's ONNX parser does not import (TRT007), Q/DQ per-channel needs opset >= 13 (TRT008),
  and every dynamic input dimension needs an optimization-profile range (TRT009).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from edgekd.lint.graph import GraphIndex, attr
from edgekd.lint.result import Violation

COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
FLOAT_TYPES = {1, 10, 16}  # FLOAT, FLOAT16, BFLOAT16
INT32 = 6

# A deliberately small list: ops the TensorRT ONNX parser has no importer for, with the reason a user can act on.
UNSUPPORTED_OPS = {
    "MatMulInteger": "integer-op (QOperator) format; TensorRT reads QuantizeLinear/DequantizeLinear only",
    "ConvInteger": "integer-op (QOperator) format; TensorRT reads QuantizeLinear/DequantizeLinear only",
    "QLinearConv": "integer-op (QOperator) format; TensorRT reads QuantizeLinear/DequantizeLinear only",
    "QLinearMatMul": "integer-op (QOperator) format; TensorRT reads QuantizeLinear/DequantizeLinear only",
    "DynamicQuantizeLinear": "dynamic (run-time) quantization; TensorRT needs static scales in Q/DQ",
    "StringNormalizer": "string tensors are not supported by TensorRT",
    "TfIdfVectorizer": "text featurization op; not imported by TensorRT",
    "SequenceConstruct": "ONNX sequence types are not supported by TensorRT",
    "SequenceAt": "ONNX sequence types are not supported by TensorRT",
    "SplitToSequence": "ONNX sequence types are not supported by TensorRT",
    "Unique": "data-dependent output shape; not imported by TensorRT",
}
FIX_QOPERATOR = "export the Q/DQ format (edgekd export --profile jetson-orin uses the PT2E Q/DQ exporter)"


def _v(out: list, rule: str, name: str, node, message: str, fix: str, severity: str = "error") -> None:
    out.append(Violation(rule, name, getattr(node, "name", "") or str(node), message, fix, severity))


def check_zero_points(idx: GraphIndex, out: list) -> None:
    for node in idx.model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3 or not node.input[2]:
            continue
        zp = idx.const(node.input[2])
        if zp is None:
            _v(out, "TRT001", "nonzero-zero-point", node, "zero point is computed at run time",
               "make the zero point a constant 0 (symmetric quantization)")
        elif np.any(zp != 0):
            _v(out, "TRT001", "nonzero-zero-point", node,
               f"zero point {np.unique(zp)[:4].tolist()} is not 0; TensorRT int8 is symmetric",
               "quantize with zero point 0: edgekd.quant.pt2e.make_quantizer('tensorrt') (symmetric activations)")


def check_int32_dq(idx: GraphIndex, out: list) -> None:
    for node in idx.model.graph.node:
        if node.op_type == "DequantizeLinear" and idx.const_dtype(node.input[0]) == INT32:
            _v(out, "TRT002", "int32-bias-dq", node, "int32 DequantizeLinear (quantized bias) is not fused by TensorRT",
               "keep the bias in float (TensorRT adds it inside the int8 kernel); export_qdq_onnx folds it")


def expected_weight_axis(consumer, input_pos: int, weight_rank: int, idx: GraphIndex) -> int | None:
    """The output-channel axis of a weight tensor for its consumer, or None when it is not a weight input."""
    op = consumer.op_type
    if op == "Conv" and input_pos == 1:
        return 0
    if op == "ConvTranspose" and input_pos == 1:
        return 1
    if op == "Gemm" and input_pos == 1:
        return 0 if attr(consumer, "transB", 0) else 1
    if op == "MatMul" and input_pos == 1:
        return weight_rank - 1
    return None


def _weight_consumers(idx: GraphIndex, name: str) -> Iterable[tuple]:
    """(compute node, input position, axis permutation) for a DQ output, looking through one Transpose."""
    for user in idx.users(name):
        if user.op_type == "Transpose":
            perm = attr(user, "perm")
            for inner in idx.users(user.output[0]):
                for pos, inp in enumerate(inner.input):
                    if inp == user.output[0]:
                        yield inner, pos, perm
        else:
            for pos, inp in enumerate(user.input):
                if inp == name:
                    yield user, pos, None


def check_weight_axes(idx: GraphIndex, out: list) -> None:
    for node in idx.model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        weight = idx.const(node.input[0])
        if weight is None or weight.ndim < 2:
            continue
        scale = idx.const(node.input[1])
        if scale is None:
            continue
        for consumer, pos, perm in _weight_consumers(idx, node.output[0]):
            want = expected_weight_axis(consumer, pos, weight.ndim, idx)
            if want is None or consumer.op_type not in COMPUTE_OPS:
                continue
            if perm is not None:  # the compute op sees the transposed weight: map its axis back
                want = list(perm)[want]
            if scale.size == 1:
                _v(out, "TRT003", "per-tensor-weight", node,
                   f"weight of {consumer.name} is quantized per tensor", "quantize weights per output channel "
                   "(XNNPACKQuantizer is_per_channel=True)", severity="warning")
                continue
            given = attr(node, "axis", None)
            axis = 1 if given is None else given  # ONNX default
            axis = axis + weight.ndim if axis < 0 else axis
            if axis != want or weight.shape[axis] != scale.size:
                what = "has no axis attribute (ONNX default 1)" if given is None else f"has axis={axis}"
                _v(out, "TRT003", "weight-axis", node,
                   f"per-channel weight of {consumer.op_type} {consumer.name} {what} (scales: {scale.size},"
                   f" weight shape {list(weight.shape)}); the output-channel axis is {want}",
                   f"set DequantizeLinear axis={want} with one scale per output channel")


def check_dangling(idx: GraphIndex, out: list) -> None:
    for node in idx.model.graph.node:
        users = idx.users(node.output[0])
        if node.op_type == "QuantizeLinear":
            bad = [u.op_type for u in users if u.op_type != "DequantizeLinear"]
            if not users or bad or node.output[0] in idx.graph_outputs:
                _v(out, "TRT004", "dangling-q", node,
                   f"QuantizeLinear not followed by DequantizeLinear (consumers: {bad or 'none'})",
                   "pair every QuantizeLinear with a DequantizeLinear of the same scale, or remove it")
        elif node.op_type == "DequantizeLinear":
            if not users and node.output[0] not in idx.graph_outputs:
                _v(out, "TRT005", "dangling-dq", node, "DequantizeLinear result is not used",
                   "remove it (onnx-graphsurgeon cleanup)")
            elif users and all(u.op_type == "QuantizeLinear" for u in users):
                same = all(_same_qparams(idx, node, u) for u in users)
                _v(out, "TRT005", "dq-to-q", node,
                   "DequantizeLinear feeds only QuantizeLinear " + ("(a no-op pair)" if same else "(requantization)")
                   + ": TensorRT runs it as a standalone reformat layer",
                   "remove the redundant Q/DQ pair or give both tensors one scale", severity="warning")


def _same_qparams(idx: GraphIndex, a, b) -> bool:
    sa, sb = idx.const(a.input[1]), idx.const(b.input[1])
    return sa is not None and sb is not None and sa.shape == sb.shape and bool(np.allclose(sa, sb))


def check_float_paths(idx: GraphIndex, out: list, notes: list) -> None:
    unknown = 0
    for node in idx.model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        t = idx.elem_type.get(node.input[0])
        if t is None:
            unknown += 1
        elif t not in FLOAT_TYPES:
            _v(out, "TRT006", "qdq-non-float", node, f"QuantizeLinear on a non-float tensor (type {t})",
               "do not quantize integer paths (index arithmetic, masks): edgekd.quant.pt2e.NonFloatGuard")
    if unknown:
        notes.append(f"TRT006: element type unknown for {unknown} QuantizeLinear input(s) (shape inference)")


def check_ops(idx: GraphIndex, out: list) -> None:
    for node in idx.model.graph.node:
        if node.op_type in UNSUPPORTED_OPS and node.domain in ("", "ai.onnx"):
            reason = UNSUPPORTED_OPS[node.op_type]
            fix = FIX_QOPERATOR if "QOperator" in reason or "dynamic" in reason else "replace the op before export"
            _v(out, "TRT007", "unsupported-op", node, f"{node.op_type}: {reason}", fix)
        elif node.domain not in ("", "ai.onnx"):
            _v(out, "TRT007", "unsupported-op", node, f"{node.domain}::{node.op_type} is a custom-domain op",
               "TensorRT needs a plugin for it; export with standard ONNX ops")


def check_opset(idx: GraphIndex, out: list) -> None:
    opset = idx.opset()
    qdq = [n for n in idx.model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    per_channel = [n for n in qdq if (s := idx.const(n.input[1])) is not None and s.size > 1]
    if qdq and opset < 10:
        _v(out, "TRT008", "opset", "graph", f"opset {opset} has no QuantizeLinear/DequantizeLinear",
           "export with opset >= 13 (edgekd default: 18)")
    elif per_channel and opset < 13:
        _v(out, "TRT008", "opset", per_channel[0], f"per-channel Q/DQ needs opset >= 13, the model has {opset}",
           "export with opset >= 13 (edgekd default: 18; 17 for older JetPack)")


def check_dynamic_dims(idx: GraphIndex, out: list, shapes: dict | None, notes: list) -> None:
    """Every dynamic input dimension needs a min/opt/max range (profile tensorrt.shapes.<input>)."""
    init_names = set(idx.initializers)
    for inp in idx.model.graph.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        spec = (shapes or {}).get(inp.name)
        if dynamic and spec is None:
            names = [dims[i].dim_param or "?" for i in dynamic]
            _v(out, "TRT009", "dynamic-dims-no-profile", inp.name,
               f"input {inp.name} has dynamic dims {names} at axes {dynamic} and no optimization-profile shape",
               f"add tensorrt.shapes.{inp.name}: {{min: [...], opt: [...], max: [...]}} to the device profile",
               severity="error" if shapes is not None else "warning")
        elif spec is not None:
            for kind in ("min", "opt", "max"):
                value = list(getattr(spec, kind, None) or spec[kind])
                if len(value) != len(dims):
                    _v(out, "TRT009", "profile-shape-rank", inp.name,
                       f"profile {kind} shape {value} has rank {len(value)}, the input has rank {len(dims)}",
                       "give one size per input dimension")
                    break
                fixed = [(i, d.dim_value, value[i]) for i, d in enumerate(dims)
                         if d.HasField("dim_value") and d.dim_value != value[i]]
                if fixed:
                    _v(out, "TRT009", "profile-shape-static", inp.name,
                       f"profile {kind} shape {value} differs from the static dims (axis, model, profile) {fixed}",
                       "use the model's size on static axes, or export that axis as dynamic")
                    break
    if shapes is None:
        notes.append("TRT009: no device profile given; dynamic dims are reported as warnings")


def run_rules(idx: GraphIndex, shapes: dict | None) -> tuple[list[Violation], list[str], list[str]]:
    out: list[Violation] = []
    notes: list[str] = []
    checks = ["TRT001 zero points", "TRT002 int32 DQ", "TRT003 weight axes", "TRT004/5 dangling Q/DQ",
              "TRT006 float paths", "TRT007 ops", "TRT008 opset", "TRT009 dynamic dims"]
    check_zero_points(idx, out)
    check_int32_dq(idx, out)
    check_weight_axes(idx, out)
    check_dangling(idx, out)
    check_float_paths(idx, out, notes)
    check_ops(idx, out)
    check_opset(idx, out)
    check_dynamic_dims(idx, out, shapes, notes)
    return out, checks, notes
