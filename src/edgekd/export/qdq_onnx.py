"""TensorRT-ready Q/DQ ONNX from a converted PT2E model (the same scales as the .pte).

Path: converted GraphModule -> torch.onnx (dynamo, opset >= 18; or TorchScript with Q/DQ symbolics for opset
13..17, older JetPack) -> exact graph rewrites that help TensorRT fuse -> TensorRT readiness lint.

Why the lead saw cosine 0.78 in onnxruntime while the .pte gave 0.993 (measured here, see the report): the ONNX is
right; onnxruntime's CPU int8 kernels are not. At ORT_ENABLE_EXTENDED and above onnxruntime fuses DQ->Conv->Q into
QLinearConv and, on x86, converts s8 activations to u8 (QDQS8ToU8Transformer); the u8 x s8 AVX2 path (vpmaddubsw,
no VNNI on this CPU) saturates int16 partial sums. Executing the same file with exact Q/DQ semantics (graph
optimizations at BASIC, where DequantizeLinear -> float op -> QuantizeLinear run as written) matches the converted
PyTorch model; so parity here uses `exact_session`, and `ort_parity` reports the default-session number beside it.
TensorRT accumulates in int32 and does not have that saturation.

Rewrites (each is exact for zero point 0 and recorded in the returned details):
- fold_bias_dq:       int32 bias DequantizeLinear -> float initializer (TensorRT adds bias in float).
- fold_pad_into_conv: constant zero Pad feeding (Q->DQ->) Conv moves into Conv's pads (EfficientNet's "same"
                      padding): one less layer and no padded int8 copy; Q(0) == 0 so Q/DQ commute with it.
- drop_noop_dq_q:     DQ -> Q with the same scale and zero point 0 (left where the exporter removed a view/no-op
                      between two annotated tensors, e.g. in BERT attention) is the identity on int8 values;
                      TensorRT would run it as a standalone reformat layer. Consumers read the first Q directly.
- fuse_act_qdq:       Conv/Gemm/MatMul -> Q -> DQ -> Relu/Clip -> Q (same scale) drops the inner pair, giving
                      TensorRT's fusable Conv+bias+activation -> Q; Q(act(DQ(Q(x)))) == Q(act(x)) when both Q share
                      the scale and zero point 0 (monotone rounding).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.report.atomic import atomic_path

DYNAMO_MIN_OPSET = 18


# --------------------------------------------------------------------------------------------- export
def export_qdq_onnx(converted: torch.fx.GraphModule, example_inputs: tuple, path: Path, *, input_names: list[str],
                    output_names: list[str], dynamic_axes: dict, opset: int = 18, shapes: dict | None = None,
                    lint: bool = True, polygraphy: bool = True) -> dict:
    """Export `converted` (convert_pt2e output) to a Q/DQ ONNX at `path`; returns counts, rewrites and lint summary.

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
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    details = {"exporter": exporter, "opset": opset, **qdq_counts(model), "rewrites": rewrites,
               "rewrite_counts": dict(Counter(r["rewrite"] for r in rewrites)),
               "dynamic_axes": _dynamic_dims(model), "dynamic_axes_dropped": _dropped(model, dynamic_axes)}
    if lint:
        from edgekd.lint import lint_onnx

        details["lint"] = lint_onnx(path, "tensorrt", shapes=shapes, polygraphy=polygraphy).summary()
    return details


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


# --------------------------------------------------------------------------------------------- rewrites
def make_names_unique(model) -> list[dict]:
    """Rename an earlier value that shares its name with a later one (measured: torch 2.13's dynamo exporter names
    the graph output "embedding" although aten.embedding's Gather already wrote a value "embedding"; the file is
    then not SSA and fails the checker). The earlier value and its consumers up to the redefinition get a new name."""
    first: dict[str, int] = {}
    nodes = list(model.graph.node)
    records = []
    for j, node in enumerate(nodes):
        for out in node.output:
            if out and out in first:
                new = f"{out}__{first[out]}"
                for k in range(first[out], j):
                    for seq in (nodes[k].input, nodes[k].output):
                        for i, name in enumerate(seq):
                            if name == out and not (k == first[out] and seq is nodes[k].input):
                                seq[i] = new
                records.append({"rewrite": "rename_duplicate_value", "node": nodes[first[out]].name,
                                "detail": f"{out!r} defined twice by the exporter; the first is now {new!r}"})
            if out:
                first[out] = j
    return records


def rewrite_for_tensorrt(model) -> tuple[object, list[dict]]:
    """Apply the exact rewrites listed in the module docstring; returns the model and one record per rewrite."""
    rewrites: list[dict] = []
    fold_bias_dq(model, rewrites)
    fold_pad_into_conv(model, rewrites)
    fuse_act_qdq(model, rewrites)
    drop_noop_dq_q(model, rewrites)
    return model, rewrites


def _zero(idx, name: str) -> bool:
    value = idx.const(name) if name else np.zeros(1)
    return value is not None and not np.any(value)


def _remove(model, nodes) -> None:
    ids = {id(n) for n in nodes}
    keep = [n for n in model.graph.node if id(n) not in ids]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def fold_bias_dq(model, rewrites: list) -> None:
    from onnx import numpy_helper

    from edgekd.lint.graph import attr, index_graph

    idx = index_graph(model, infer_types=False)
    gone = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or idx.const_dtype(node.input[0]) != 6:  # 6: INT32
            continue
        q, scale = idx.const(node.input[0]), idx.const(node.input[1])
        zp = idx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
        if q is None or scale is None or zp is None:
            continue
        axis = attr(node, "axis", 1)
        if scale.size > 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), np.broadcast_to(zp, scale.shape).reshape(shape)
        value = ((q.astype(np.int64) - zp.astype(np.int64)) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        gone.append(node)
        rewrites.append({"rewrite": "fold_bias_dq", "node": node.name, "detail": "int32 bias -> float initializer"})
    _remove(model, gone)


def fold_pad_into_conv(model, rewrites: list) -> None:
    from onnx import helper

    from edgekd.lint.graph import attr, index_graph

    idx = index_graph(model, infer_types=False)
    gone = []
    for pad in list(model.graph.node):
        if pad.op_type != "Pad" or attr(pad, "mode", b"constant") not in (b"constant", "constant"):
            continue
        pads = idx.const(pad.input[1]) if len(pad.input) > 1 else None
        if pads is None or (len(pad.input) > 2 and pad.input[2] and not _zero(idx, pad.input[2])):
            continue
        if len(pad.input) > 3 and pad.input[3]:  # explicit axes: keep it simple and exact, leave the Pad
            continue
        pads = [int(p) for p in pads]
        rank = len(pads) // 2
        if rank < 3 or any(p < 0 for p in pads) or any(pads[i] or pads[i + rank] for i in (0, 1)):
            continue  # only non-negative spatial padding can move into Conv
        out = pad.output[0]
        if out in idx.graph_outputs:
            continue
        users = idx.users(out)
        chain, convs = [], []
        ok = bool(users)
        for user in users:
            if user.op_type == "Conv":
                convs.append(user)
            elif (user.op_type == "QuantizeLinear" and len(user.input) > 2 and _zero(idx, user.input[2])
                  and user.output[0] not in idx.graph_outputs):
                chain.append(user)
                for dq in idx.users(user.output[0]):
                    if dq.op_type != "DequantizeLinear" or dq.output[0] in idx.graph_outputs:
                        ok = False
                        continue
                    chain.append(dq)
                    convs.extend(idx.users(dq.output[0]))
                    ok &= all(c.op_type == "Conv" for c in idx.users(dq.output[0]))
            else:
                ok = False
        if not ok or not convs or any(attr(c, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") for c in convs):
            continue
        if any(c.input[0] not in (out, *[n.output[0] for n in chain]) for c in convs):
            continue
        spatial = rank - 2
        for conv in convs:
            old = list(attr(conv, "pads", [0] * (2 * spatial)))
            new = [old[i] + pads[2 + i] for i in range(spatial)] + [old[spatial + i] + pads[rank + 2 + i]
                                                                     for i in range(spatial)]
            kept = [a for a in conv.attribute if a.name != "pads"]
            del conv.attribute[:]
            conv.attribute.extend(kept + [helper.make_attribute("pads", new)])
        for user in users:  # Q (or Conv) now reads the unpadded tensor
            user.input[list(user.input).index(out)] = pad.input[0]
        gone.append(pad)
        rewrites.append({"rewrite": "fold_pad_into_conv", "node": pad.name,
                         "detail": f"pads {pads} -> {', '.join(c.name for c in convs)}"})
    _remove(model, gone)


def fuse_act_qdq(model, rewrites: list) -> None:
    from edgekd.lint.graph import index_graph

    idx = index_graph(model, infer_types=False)
    gone = []
    for node in list(model.graph.node):
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        users = idx.users(node.output[0])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or node.output[0] in idx.graph_outputs:
            continue
        q1 = users[0]
        dqs = idx.users(q1.output[0])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear" or q1.output[0] in idx.graph_outputs:
            continue
        dq1 = dqs[0]
        acts = idx.users(dq1.output[0])
        if len(acts) != 1 or acts[0].op_type not in ("Relu", "Clip") or dq1.output[0] in idx.graph_outputs:
            continue
        act = acts[0]
        q2s = idx.users(act.output[0])
        if not q2s or any(q.op_type != "QuantizeLinear" for q in q2s) or act.output[0] in idx.graph_outputs:
            continue
        s1 = idx.const(q1.input[1])
        if s1 is None or not (_zero(idx, q1.input[2] if len(q1.input) > 2 else "")):
            continue
        same = all((s2 := idx.const(q.input[1])) is not None and s2.shape == s1.shape and np.allclose(s1, s2, rtol=0,
                   atol=0) and _zero(idx, q.input[2] if len(q.input) > 2 else "") for q in q2s)
        if not same:
            continue
        act.input[0] = node.output[0]
        gone += [q1, dq1]
        rewrites.append({"rewrite": "fuse_act_qdq", "node": act.name,
                         "detail": f"dropped {q1.name}/{dq1.name} between {node.name} and {act.op_type}"})
    _remove(model, gone)


def drop_noop_dq_q(model, rewrites: list) -> None:
    from edgekd.lint.graph import index_graph

    idx = index_graph(model, infer_types=False)
    gone = []
    for dq in list(model.graph.node):
        if dq.op_type != "DequantizeLinear" or dq.output[0] in idx.graph_outputs:
            continue
        qs = idx.users(dq.output[0])
        if not qs or any(q.op_type != "QuantizeLinear" or q.output[0] in idx.graph_outputs for q in qs):
            continue
        s1 = idx.const(dq.input[1])
        if s1 is None or s1.size != 1 or not _zero(idx, dq.input[2] if len(dq.input) > 2 else ""):
            continue
        if not all((s2 := idx.const(q.input[1])) is not None and s2.size == 1 and float(s2) == float(s1)
                   and _zero(idx, q.input[2] if len(q.input) > 2 else "") for q in qs):
            continue
        for q in qs:
            for user in idx.users(q.output[0]):
                for i, name in enumerate(user.input):
                    if name == q.output[0]:
                        user.input[i] = dq.input[0]
        gone += [dq, *qs]
        rewrites.append({"rewrite": "drop_noop_dq_q", "node": dq.name,
                         "detail": f"{dq.name} -> {', '.join(q.name for q in qs)} (same scale) removed"})
    _remove(model, gone)


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


# --------------------------------------------------------------------------------------------- parity
def exact_session(path: Path, threads: int = 1):
    """onnxruntime with Q/DQ executed as written (graph optimizations BASIC: no QLinear fusion, no s8->u8)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exact_runner(path: Path, threads: int = 1):
    """A runtime.LOADERS-style callable over exact_session: what verify uses for a TensorRT-bound Q/DQ ONNX, whose
    int8 math TensorRT does in int32 (not onnxruntime's saturating u8 x s8 CPU kernels)."""
    return session_runner(exact_session(path, threads))


def session_runner(session):
    """A runtime.LOADERS-style callable over an onnxruntime session: positional inputs (tensors or arrays) in order."""
    names = [i.name for i in session.get_inputs()]

    def run(inputs):
        feed = {n: (x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)) for n, x in zip(names, inputs)}
        return session.run(None, feed)

    return run


def default_session(path: Path, threads: int = 1, config: dict[str, str] | None = None):
    """onnxruntime's default session (all graph optimizations), with optional session config entries."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_parity(converted: torch.nn.Module, path: Path, samples: list[tuple], threads: int = 1) -> dict:
    """Cosine, top-1 agreement and max |diff| of the ONNX in onnxruntime against the converted PyTorch model, for the
    exact-semantics session (the parity number) and onnxruntime's default session (its CPU int8 kernels)."""
    with torch.no_grad():
        ref = np.concatenate([_first(converted(*s)).reshape(len(s[0]), -1) for s in samples])
    out = {}
    for label, session in (("exact", exact_session(path, threads)), ("ort_default", default_session(path, threads))):
        names = [i.name for i in session.get_inputs()]
        got = np.concatenate([session.run(None, {n: t.numpy() for n, t in zip(names, s)})[0].reshape(len(s[0]), -1)
                              for s in samples])
        out[label] = compare(got, ref)
    return out


def _first(value):
    if isinstance(value, (tuple, list)):
        value = value[0]
    return value.detach().float().numpy()


def compare(got: np.ndarray, ref: np.ndarray) -> dict:
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(got - ref).max()), "samples": int(len(ref))}
