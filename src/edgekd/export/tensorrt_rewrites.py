"""Exact ONNX graph rewrites that let TensorRT (and onnxruntime) fuse a Q/DQ graph, applied by export/qdq_onnx.py
to every PT2E Q/DQ ONNX.

Rewrites (each exact, and recorded in the returned details):
- fold_bias_dq:       int32 bias DequantizeLinear -> float initializer (TensorRT adds bias in float).
- fold_pad_into_conv: constant zero Pad feeding (Q->DQ->) Conv moves into Conv's pads (EfficientNet's "same"
                      padding): one less layer and no padded int8 copy. Q/DQ commute with it at any zero point:
                      Q(0) is the zero point, which dequantizes to exactly 0. onnxruntime, too, runs a Pad between
                      DQ and Conv in float and leaves that Conv unfused (not a QLinearConv).
- drop_noop_dq_q:     DQ -> Q with the same scale, zero point and type (left where the exporter removed a view/no-op
                      between two annotated tensors, e.g. in BERT attention, or where fold_pad_into_conv took the
                      Pad between them) is the identity on int8 values; TensorRT would run it as a standalone
                      reformat layer, onnxruntime as two float passes. Consumers read the first Q directly.
- fuse_act_qdq:       Conv/Gemm/MatMul -> Q -> DQ -> Relu/Clip -> Q (same scale) drops the inner pair, giving
                      TensorRT's fusable Conv+bias+activation -> Q; Q(act(DQ(Q(x)))) == Q(act(x)) when both Q share
                      the scale and zero point 0 (monotone rounding).
"""

from __future__ import annotations

import numpy as np


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


def _zero_point(idx, node) -> tuple[int | None, np.ndarray | None]:
    """(ONNX element type, value) of a Q/DQ node's zero point; an omitted one is uint8 0 (the operators' default)."""
    if len(node.input) < 3 or not node.input[2]:
        return 2, np.zeros(1, dtype=np.uint8)  # 2: UINT8
    return idx.const_dtype(node.input[2]), idx.const(node.input[2])


def same_zero_point(idx, dq, q) -> bool:
    """DQ and Q agree on the zero point's type and value, so Q(DQ(v)) == v for every code v."""
    (t1, z1), (t2, z2) = _zero_point(idx, dq), _zero_point(idx, q)
    return t1 is not None and t1 == t2 and z1 is not None and z2 is not None and z1.size == 1 and z2.size == 1 \
        and int(z1.reshape(-1)[0]) == int(z2.reshape(-1)[0])


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
            elif user.op_type == "QuantizeLinear" and user.output[0] not in idx.graph_outputs:
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
        if s1 is None or s1.size != 1 or not all(same_zero_point(idx, dq, q) for q in qs):
            continue
        if not all((s2 := idx.const(q.input[1])) is not None and s2.size == 1 and float(s2) == float(s1) for q in qs):
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
