"""ONNX export for onnxruntime: fp32 via the dynamo exporter, int8 by the mode the recipe (or the task) selects.

Modes (stages.ptq.onnx_mode):
- pt2e:        the converted PT2E model exported as Q/DQ ONNX (same scales as the .pte; QAT scales after QAT).
- ort_static:  onnxruntime's static QDQ quantization, per-channel, calibrated on the same real samples.
- ort_dynamic: onnxruntime's dynamic int8 (MatMulInteger): on AVX2 CPUs without VNNI it is the fastest int8 path
               for transformers (docs/architecture.md); activations are quantized per batch at run time.
- auto:        tensorrt -> pt2e; text models -> ort_dynamic; other models -> ort_static.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError
from edgekd.report.atomic import atomic_path


def dynamic_shapes_for(bundle: ModelBundle, example_inputs: tuple) -> tuple | None:
    """torch.export dynamic_shapes for every axis the bundle marks dynamic; inputs that name an axis alike share one
    symbol (a text model's input_ids and attention_mask share batch and sequence), so the ONNX has named dims."""
    if not bundle.dynamic_axes:
        return None
    dims: dict[str, torch.export.Dim] = {}
    shapes = []
    for name, tensor in zip(bundle.input_names, example_inputs):
        spec = {}
        for axis, dim_name in (bundle.dynamic_axes.get(name) or {}).items():
            axis = int(axis)
            if axis < tensor.dim():
                # max=1024 keeps the range finite (torch.export refines it further where the model bounds it, e.g.
                # BERT's position table); min=1: a 1-token sentence and a batch of one are real inputs
                spec[axis] = dims.setdefault(dim_name, torch.export.Dim(dim_name, min=1, max=1024))
        shapes.append(spec or None)
    return tuple(shapes)


def export_onnx(module: torch.nn.Module, bundle: ModelBundle, path: Path, opset: int = 18,
                dynamic_batch: bool = True, passes: tuple[str, ...] = (), keep_layer_nodes: bool = False) -> dict:
    """The fp32 ONNX (dynamo exporter), tidied, with the runtime's graph passes (export/ort_graph.py) applied before
    it is renamed into place: quantizers then start from the passed graph. `keep_layer_nodes`: a precision plan
    must find each layer's own node, so no pass merges layers."""
    from edgekd.export.ort_graph import apply_graph_passes

    example = bundle.example_inputs
    with atomic_path(path) as tmp:
        try:
            program = torch.onnx.export(
                module, example, dynamo=True, opset_version=opset, external_data=False,
                input_names=bundle.input_names, output_names=bundle.output_names,
                dynamic_shapes=dynamic_shapes_for(bundle, example) if dynamic_batch else None, verbose=False)
            program.save(str(tmp), external_data=False)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; name the file and op
            raise EdgekdError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:400]}", file=str(path)) from exc
        renamed = _tidy_exported(tmp)
        done = apply_graph_passes(tmp, passes, keep_layer_nodes)
    return {"opset": opset, "dynamic_batch": dynamic_batch, "dynamic_axes": dynamic_dims(path), **op_summary(path),
            **({"renamed": renamed} if renamed else {}), **({"graph_passes": done} if done else {})}


def dynamic_dims(path: Path) -> dict[str, dict[int, str]]:
    """{input: {axis: dim name}} for the symbolic axes of the file's inputs: what the manifest says may vary."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {i.name: {a: d.dim_param for a, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param}
            for i in model.graph.input if any(d.dim_param for d in i.type.tensor_type.shape.dim)}


# torch.onnx writes each node's Python stack trace into the file, with the absolute paths of the machine and checkout
# that exported it: the same model exported from two folders differs in bytes (a size baseline recorded on a laptop
# then fails in CI) and a shipped artifact names its author's home folder. Module scopes (namespace,
# pkg.torch.onnx.name_scopes) stay: the precision plans map ONNX nodes to modules through them.
SOURCE_TRACE_KEYS = frozenset({"pkg.torch.onnx.stack_trace"})


def drop_source_traces(model) -> int:
    """Remove SOURCE_TRACE_KEYS from every node of an onnx.ModelProto (graph, subgraphs, functions); returns count."""
    dropped = 0

    def clean(nodes) -> None:
        nonlocal dropped
        for node in nodes:
            keep = [p for p in node.metadata_props if p.key not in SOURCE_TRACE_KEYS]
            if len(keep) != len(node.metadata_props):
                dropped += len(node.metadata_props) - len(keep)
                del node.metadata_props[:]
                node.metadata_props.extend(keep)
            for attr in node.attribute:
                for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    clean(graph.node)

    clean(model.graph.node)
    for function in model.functions:
        clean(function.node)
    return dropped


def _tidy_exported(path: Path) -> list[dict]:
    """One load and save of the exporter's file: values defined twice renamed (the dynamo exporter does that when an
    output is named like an internal value, MiniLM's "embedding" output vs aten.embedding's Gather, and onnxruntime
    then refuses the file) and source traces dropped (drop_source_traces). Returns the renames."""
    import onnx

    from edgekd.export.tensorrt_rewrites import make_names_unique

    model = onnx.load(str(path))
    renamed = make_names_unique(model)
    if drop_source_traces(model) or renamed:
        onnx.save(model, str(path))
    return renamed


def op_summary(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = Counter(node.op_type for node in model.graph.node)
    return {"nodes": sum(ops.values()), "ops": dict(ops.most_common())}


def auto_mode(backend, bundle: ModelBundle) -> str:
    """Which quantizer writes the int8 ONNX when the recipe says `onnx_mode: auto`: the backend record's choice
    for text encoders (input_ids) or for image models (edgekd/backends/)."""
    return backend.onnx_mode_text if "input_ids" in bundle.input_names else backend.onnx_mode_images


def summarize_precision(path: Path) -> dict:
    """Count weights that reach compute ops through int8 (DequantizeLinear / integer ops) versus as floats."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    init_types = {i.name: i.data_type for i in model.graph.initializer}
    int8_weights = sum(1 for t in init_types.values() if t in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8))
    float_weights = sum(1 for n, t in init_types.items() if t == onnx.TensorProto.FLOAT
                        and np.prod(_dims(model, n)) > 1024)
    return {"int8_initializers": int8_weights, "large_float_initializers": float_weights}


def _dims(model, name: str) -> list[int]:
    for init in model.graph.initializer:
        if init.name == name:
            return list(init.dims) or [1]
    return [1]


def export_dynamic_int8(module: torch.nn.Module, bundle: ModelBundle, path: Path, opset: int, isa: str,
                        exclude: list[str] | None = None) -> dict:
    """The int8 ONNX of float weights the ONNX exporter cannot take quantized: a dynamically quantized PT2E graph
    (choose_qparams) does not export, so `module`'s float weights (the fp32 student, or the weights dynamic QAT
    trained) are exported to fp32 and quantized by onnxruntime's dynamic quantizer (edgekd/quant/ort.py):
    per-call u8 activations like the .pte's dynamically quantized Linears, s8 per-channel weights, int8 Gather."""
    import tempfile

    from edgekd.quant.ort import ort_quantize

    with tempfile.TemporaryDirectory(prefix="edgekd-dynamic-") as tmp:
        float_path = Path(tmp) / "float.onnx"
        export_onnx(module, bundle, float_path, opset=opset)
        details = ort_quantize(float_path, path, "dynamic", (), exclude or [], input_names=bundle.input_names,
                               isa=isa)
    details.update(op_summary(path), dynamic_axes=dynamic_dims(path), mode="ort_dynamic")
    return details
