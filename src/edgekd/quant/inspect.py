"""Read an artifact and say which precision each layer actually has in it (not what was asked for).

The plan is a promise; these functions check it was kept. They look at the artifact, not at the code that wrote it:

- ONNX: for every Conv / MatMul / Gemm (and the integer forms onnxruntime writes: QLinearConv, ConvInteger,
  MatMulInteger, DynamicQuantizeMatMul) follow the weight input back through Transpose / Reshape / Cast / Identity;
  a DequantizeLinear of an int8 initializer means int8, a float initializer means fp32 or fp16. The module FQN comes
  from the `pkg.torch.onnx.name_scopes` metadata the dynamo exporter writes on every node (kept by onnxruntime's
  quantizer), falling back to the weight initializer's name.
- ExecuTorch: the lowered program before serialization (the XNNPACK payload in a .pte is an opaque flatbuffer):
  every convolution / linear node inside each delegate's original graph, with whether its weight comes through a
  dequantize (int8) or is a float parameter, plus any such node left outside the delegate.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, Iterable

WEIGHT_INPUT = {"Conv": 1, "MatMul": 1, "Gemm": 1, "ConvInteger": 1, "MatMulInteger": 1,
                "DynamicQuantizeMatMul": 1, "QLinearConv": 3, "QLinearMatMul": 3, "ConvTranspose": 1}
PASS_THROUGH = {"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
SUFFIXES = ("_quantized", "_DequantizeLinear_Output", "_scale", "_zero_point", "_Transposed")


def _onnx_dtype_name(elem_type: int) -> str:
    import onnx

    return {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16",
            onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "int8", onnx.TensorProto.INT4: "int4",
            onnx.TensorProto.UINT4: "int4", onnx.TensorProto.DOUBLE: "fp64"}.get(elem_type, f"type{elem_type}")


def onnx_module_of(node, module_names: set[str] | None = None, weight_name: str | None = None) -> str | None:
    """The module FQN an ONNX node came from: name_scopes metadata, else the weight initializer's name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                scopes = []
            if module_names is not None:
                inside = [s for s in scopes if s in module_names]
                if inside:
                    return inside[-1]
            elif len(scopes) >= 2:
                return scopes[-2]
    if weight_name:
        name = re.sub(r"_Transposed_\d+", "_Transposed", weight_name)
        previous = None
        while previous != name:  # onnxruntime stacks them: W_Transposed_quantized
            previous = name
            for suffix in SUFFIXES:
                name = name.removesuffix(suffix)
        if name.endswith(".weight"):
            name = name[: -len(".weight")]
            if module_names is None or name in module_names:
                return name
    return None


def onnx_layer_precisions(model_or_path: Any, module_names: Iterable[str] | None = None) -> dict[str, dict]:
    """{module FQN (or node name when unknown): {"node", "op", "precision", "weight"}} for every weight layer."""
    import onnx

    model = onnx.load(str(model_or_path), load_external_data=False) if isinstance(model_or_path, (str, Path)) \
        else model_or_path
    names = set(module_names) if module_names is not None else None
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    for node in graph.node:  # Constant nodes hold weights in some exports
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    inits.setdefault(node.output[0], attr.t)
    result: dict[str, dict] = {}
    for node in graph.node:
        index = WEIGHT_INPUT.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        precision, weight = _trace_weight(node.input[index], inits, producers)
        if precision is None:
            continue  # activation x activation MatMul (attention scores): not a layer with weights
        module = onnx_module_of(node, names, weight)
        key = module or node.name
        entry = {"node": node.name, "op": node.op_type, "precision": precision, "weight": weight}
        if key in result:  # e.g. Gemm split into MatMul + Add, or an op unrolled: keep the lowest precision seen
            entry["also"] = result[key].get("also", []) + [result[key]["node"]]
        result[key] = entry
    return result


def _trace_weight(name: str, inits, producers, depth: int = 0) -> tuple[str | None, str | None]:
    if name in inits:
        return _onnx_dtype_name(inits[name].data_type), name
    node = producers.get(name)
    if node is None or depth > 6:
        return None, None
    if node.op_type == "DequantizeLinear":
        src = node.input[0]
        if src in inits:
            return _onnx_dtype_name(inits[src].data_type), src
        inner = producers.get(src)  # a QuantizeLinear of a float weight (fake-quant graphs): still int8 at run time
        if inner is not None and inner.op_type == "QuantizeLinear":
            return "int8", inner.input[0]
        return None, None
    if node.op_type in PASS_THROUGH and node.input:
        return _trace_weight(node.input[0], inits, producers, depth + 1)
    return None, None


def pte_layer_precisions(program: Any, module_names: Iterable[str] | None = None) -> dict[str, dict]:
    """Per layer of a lowered ExecuTorch program (EdgeProgramManager, ExportedProgram or GraphModule):
    {module FQN: {"op", "precision", "delegated"}}."""
    graph_module = program
    if hasattr(graph_module, "exported_program"):
        graph_module = graph_module.exported_program()
    if hasattr(graph_module, "graph_module"):
        graph_module = graph_module.graph_module
    names = set(module_names) if module_names is not None else None
    result: dict[str, dict] = {}
    for _, child in graph_module.named_children():
        original = getattr(child, "original_module", None)
        if original is None:
            continue
        _collect_fx(original.graph_module, original, names, True, result)
    _collect_fx(graph_module, None, names, False, result)
    return result


def _collect_fx(gm, exported, names, delegated: bool, result: dict) -> None:
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        op = _op_name(node.target)
        if op not in ("convolution", "linear", "conv2d", "conv1d", "addmm", "mm"):
            continue
        module = _fx_module(node, names)
        if module is None:
            continue
        weight = node.args[1] if op not in ("addmm",) else node.args[2]
        precision = _fx_weight_precision(weight, exported)
        if precision is None:
            continue
        result[module] = {"op": op, "precision": precision, "delegated": delegated}


def _op_name(target) -> str:
    """'convolution' for aten.convolution.default, its Edge dialect wrapper and its OpOverloadPacket alike."""
    text = str(target)
    for op in ("convolution", "linear", "conv2d", "conv1d", "addmm", "mm"):
        if f"aten.{op}." in text or f"aten::{op}" in text or text.endswith(f"aten.{op}"):
            return op
    return text


def _fx_module(node, names) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values() if path]
    if names is not None:
        inside = [p for p in paths if p in names]
        return inside[-1] if inside else None
    return paths[-1] if paths else None


def _fx_weight_precision(weight, exported, depth: int = 0) -> str | None:
    import torch

    if not hasattr(weight, "op") or depth > 6:
        return None
    if weight.op == "call_function":
        target = str(getattr(weight.target, "__name__", weight.target))
        if "dequantize" in target:
            source = weight.args[0]
            value = source.meta.get("val") if hasattr(source, "meta") else None
            dtype = getattr(value, "dtype", torch.int8)
            return "int4" if dtype in (getattr(torch, "int4", None),) else "int8"
        if any(k in target for k in ("permute", "t_copy", "view", "_to_copy", "clone", "transpose")):
            return _fx_weight_precision(weight.args[0], exported, depth + 1)
        return None
    value = weight.meta.get("val")
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int8: "int8"}.get(
        dtype, str(dtype))


def compare_with_plan(plan, actual: dict[str, dict], module_names: Iterable[str]) -> list[dict]:
    """Per layer: asked vs found; an int4 request found as int8 or a missing layer is a mismatch."""
    rows = []
    for name in module_names:
        asked = plan.resolve(name)
        found = actual.get(name, {}).get("precision")
        rows.append({"layer": name, "asked": asked, "found": found, "ok": found == asked})
    return rows
