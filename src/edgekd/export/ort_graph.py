"""Graph passes that make an exported fp32 ONNX run fast in onnxruntime's CPU provider, applied before quantization
so the int8 file inherits them (the backend record's `onnx_graph_passes`, edgekd/backends/).

- "ort-attention-fusion": onnxruntime's transformer optimizer (model_type bert) fuses attention into its `Attention`
  contrib op (quantize_dynamic then writes `QAttention`) and Linear + GELU into `BiasGelu`. Its matcher knows the
  attention mask and score scaling of TorchScript exports, not the dynamo exporter's: transformers 5 builds the
  padding mask with GatherND / And / Where, and the scores are scaled by Mul. Two rewrites put the graph in the form
  it matches: the additive mask becomes Mul(Sub(1, Cast(Unsqueeze(Unsqueeze(attention_mask)))), min) (done only
  after the old and new masks are checked equal in onnxruntime on padded inputs), and Mul by 1/sqrt(d) becomes Div
  by sqrt(d).
- "ort-unfused-layernorm": residual Add -> LayerNormalization is written as Sum -> LayerNormalization, which
  onnxruntime's session-time SkipLayerNormFusion does not match. onnxruntime 1.32's SkipLayerNormalization CPU
  kernel took 0.82 ms where Add + LayerNormalization took 0.20 ms ([8, 52, 384], 1 thread); on MiniLM-L6 at batch 8
  the 12 fused ones cost 17 of 83 ms in the per-op profile (README, "Speed").
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

MASK_INPUT = "attention_mask"


def _consumers(graph) -> dict[str, list]:
    users = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node)
    return users


def keep_layernorm_unfused(model) -> int:
    """Residual Add (two computed inputs, one consumer: a LayerNormalization) -> Sum; returns how many."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    users = _consumers(graph)
    count = 0
    for node in graph.node:
        if node.op_type == "Add" and len(node.input) == 2 and not inits.intersection(node.input):
            after = users[node.output[0]]
            if len(after) == 1 and after[0].op_type == "LayerNormalization":
                node.op_type = "Sum"
                count += 1
    return count


def _score_adds(graph) -> list:
    """The Add nodes right before a Softmax: attention scores plus the additive mask."""
    producers = {o: n for n in graph.node for o in n.output}
    adds = []
    for node in graph.node:
        add = producers.get(node.input[0]) if node.op_type == "Softmax" else None
        if add is not None and add.op_type == "Add":
            adds.append(add)
    return adds


def attention_shape(model) -> tuple[int, int] | None:
    """(num_heads, hidden_size) from the Reshape that splits the query into heads: its target shape ends in
    constants (heads, head_dim), written either as an initializer or as a Concat of one-element initializers; heads
    may be -1 (transformers 5 writes view(*shape, -1, head_dim)), then it is the projection's width / head_dim."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    for add in _score_adds(graph):
        node = next((producers[i] for i in add.input if i in producers and producers[i].op_type in ("Mul", "Div")),
                    None)
        for op in ("MatMul", "Transpose", "Reshape"):
            node = producers.get(node.input[0]) if node is not None else None
            node = node if node is not None and node.op_type == op else None
        if node is None:
            continue
        shape = producers.get(node.input[1])
        if node.input[1] in inits:
            dims = numpy_helper.to_array(inits[node.input[1]]).tolist()[-2:]
        elif shape is not None and shape.op_type == "Concat" and all(i in inits for i in shape.input[-2:]):
            dims = [int(numpy_helper.to_array(inits[i]).reshape(-1)[0]) for i in shape.input[-2:]]
        else:
            continue
        if len(dims) == 2 and dims[0] == -1 and dims[1] > 0:  # view(*shape, -1, head_dim): heads from the weight
            dims[0] = _projection_width(node, producers, inits) // dims[1]
        if len(dims) == 2 and min(dims) > 0:
            return int(dims[0]), int(dims[0] * dims[1])
    return None


def _projection_width(reshape, producers, inits) -> int:
    """Output features of the query projection (MatMul [+ bias Add]) that the head-splitting Reshape reads; 0 if
    its weight is not an initializer."""
    node = producers.get(reshape.input[0])
    if node is not None and node.op_type == "Add":
        node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
    if node is None or node.op_type != "MatMul" or node.input[1] not in inits:
        return 0
    return int(inits[node.input[1]].dims[-1])


def _mask_wheres(graph) -> list:
    """Where nodes whose output feeds only attention-score Adds (the additive padding mask)."""
    adds = {a.output[0] for a in _score_adds(graph)}  # protobuf hands out new wrappers: compare by output name
    users = _consumers(graph)
    return [n for n in graph.node if n.op_type == "Where" and users[n.output[0]]
            and all(u.output[0] in adds for u in users[n.output[0]])]


def canonical_padding_mask(model) -> str:
    """Rewrite the additive padding mask into the form onnxruntime's attention matcher knows; returns "" when done,
    otherwise why not (nothing is changed then)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if MASK_INPUT not in {i.name for i in graph.input}:
        return f"no {MASK_INPUT} input"
    wheres = _mask_wheres(graph)
    if len(wheres) != 1:
        return f"{len(wheres)} additive masks (Where before the attention scores), expected 1"
    where = wheres[0]
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    keep, fill = inits.get(where.input[1]), inits.get(where.input[2])
    if keep is None or fill is None or keep.size != 1 or fill.size != 1 or keep.reshape(-1)[0] != 0 \
            or fill.reshape(-1)[0] >= 0:
        return "the mask is not Where(cond, 0, negative constant)"
    prefix = "edgekd_mask_"
    new_nodes = [
        helper.make_node("Unsqueeze", [MASK_INPUT, prefix + "axis1"], [prefix + "u1"], name=prefix + "unsqueeze1"),
        helper.make_node("Unsqueeze", [prefix + "u1", prefix + "axis2"], [prefix + "u2"], name=prefix + "unsqueeze2"),
        helper.make_node("Cast", [prefix + "u2"], [prefix + "float"], to=TensorProto.FLOAT, name=prefix + "cast"),
        helper.make_node("Sub", [prefix + "one", prefix + "float"], [prefix + "pad"], name=prefix + "sub"),
        helper.make_node("Mul", [prefix + "pad", prefix + "fill"], [where.output[0]], name=prefix + "mul")]
    constants = [numpy_helper.from_array(np.array([1], np.int64), prefix + "axis1"),
                 numpy_helper.from_array(np.array([2], np.int64), prefix + "axis2"),
                 numpy_helper.from_array(np.array(1.0, np.float32), prefix + "one"),
                 numpy_helper.from_array(fill.reshape(()).astype(np.float32), prefix + "fill")]
    if not _same_mask(model, where, new_nodes, constants):
        return "the exported mask is not the padding mask of attention_mask (checked in onnxruntime)"
    index = list(graph.node).index(where)
    graph.node.remove(where)
    for offset, node in enumerate(new_nodes):
        graph.node.insert(index + offset, node)
    graph.initializer.extend(constants)
    _prune(model)
    onnx.checker.check_model(model)
    return ""


def _same_mask(model, where, new_nodes, constants) -> bool:
    """Run the exported mask and the rewritten one in onnxruntime on padded batches of two shapes; equal after
    broadcasting over the query axis (the only axis the padding mask does not depend on)."""
    import onnx
    from onnx import helper

    from edgekd.runtime.sessions import ort_session

    old = onnx.ModelProto()
    old.CopyFrom(model)
    del old.graph.output[:]
    old.graph.output.append(helper.make_tensor_value_info(where.output[0], onnx.TensorProto.FLOAT, None))
    new = helper.make_graph(new_nodes, "mask", [i for i in model.graph.input if i.name == MASK_INPUT],
                            [helper.make_tensor_value_info(where.output[0], onnx.TensorProto.FLOAT, None)], constants)
    new_model = helper.make_model(new, opset_imports=model.opset_import, ir_version=model.ir_version)
    sessions = [ort_session(m.SerializeToString(), threads=1) for m in (old, new_model)]
    rng = np.random.default_rng(0)
    for batch, length in ((3, 7), (2, 12)):
        mask = np.ones((batch, length), np.int64)
        for row in range(batch):
            mask[row, int(rng.integers(1, length + 1)):] = 0
        feed = {i.name: (mask if i.name == MASK_INPUT else rng.integers(1, 100, (batch, length)).astype(np.int64))
                for i in sessions[0].get_inputs()}
        want = sessions[0].run(None, feed)[0]
        got = sessions[1].run(None, {MASK_INPUT: mask})[0]
        if not np.array_equal(np.broadcast_to(got, want.shape), want):
            return False
    return True


def scale_by_division(model) -> int:
    """Attention scores scaled by Mul(MatMul, c) -> Div(MatMul, 1/c), the form onnxruntime's matcher takes for the
    scaled scores (a Mul there is mistaken for the mask). Returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    count = 0
    for add in _score_adds(graph):
        for name in add.input:
            mul = producers.get(name)
            if mul is None or mul.op_type != "Mul" or mul.input[1] not in inits:
                continue
            if producers.get(mul.input[0]) is None or producers[mul.input[0]].op_type != "MatMul":
                continue
            reciprocal = mul.input[1] + "_reciprocal"
            if reciprocal not in inits:
                value = 1.0 / numpy_helper.to_array(inits[mul.input[1]]).astype(np.float64)
                inits[reciprocal] = numpy_helper.from_array(value.astype(np.float32), reciprocal)
                graph.initializer.append(inits[reciprocal])
            mul.op_type, mul.input[1] = "Div", reciprocal
            count += 1
    return count


def _prune(model) -> None:
    """Drop nodes no graph output depends on (the exporter's mask arithmetic after the rewrite)."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    needed, stack = set(), [o.name for o in graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and node.output[0] not in needed:
            needed.add(node.output[0])
            stack.extend(node.input)
    for index in reversed(range(len(graph.node))):  # in place: protobuf wrappers of removed items are not kept
        if graph.node[index].output[0] not in needed:
            del graph.node[index]
    used = {i for n in graph.node for i in n.input}
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in used:
            del graph.initializer[index]


def fuse_attention(model, keep_layer_nodes: bool = False) -> tuple[object, dict]:
    """onnxruntime's transformer optimizer on the rewritten graph; returns (model, {fused op: count} or why not).
    An optimizer error leaves the model as it came (the fusion is an optimization, recorded as not done).
    `keep_layer_nodes`: a precision plan maps each Linear to its own ONNX node; a fused Attention holds three."""
    import onnx

    shape = attention_shape(model)
    if shape is None:
        return model, {"not_done": "no attention with constant heads found", "found": False}
    if keep_layer_nodes:
        return model, {"not_done": "a precision plan maps each Linear to its own ONNX node; a fused Attention holds "
                                   "the query, key and value projections in one"}
    backup = model.SerializeToString()
    try:
        return _fuse(model, shape)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's optimizer raises many types on graphs it does not know
        return onnx.load_from_string(backup), {"not_done": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _fuse(model, shape: tuple[int, int]) -> tuple[object, dict]:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.onnx_model_bert import BertOnnxModel

    why = canonical_padding_mask(model)
    if why:
        return model, {"not_done": why}
    scale_by_division(model)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # see keep_layernorm_unfused
    options.enable_embed_layer_norm = False  # the exporter's token-type and position lookups are not its pattern
    options.use_raw_attention_mask(True)  # the 2-D mask as given: any padding side, not a per-row end index
    optimizer = BertOnnxModel(model, num_heads=shape[0], hidden_size=shape[1])
    # symbolic shape inference fails on the exporter's token-type lookup (GatherElements of a buffer) and prints;
    # the fusions used here do not need it
    optimizer.disable_shape_inference()
    optimizer.optimize(options)
    stats = {k: v for k, v in optimizer.get_fused_operator_statistics().items()
             if v and k in ("Attention", "BiasGelu", "Gelu", "FastGelu")}
    return optimizer.model, {"fused": stats, "num_heads": shape[0], "hidden_size": shape[1]}


def apply_graph_passes(path: Path, passes: tuple[str, ...], keep_layer_nodes: bool = False) -> dict:
    """Run `passes` (backends/record.py ONNX_GRAPH_PASSES) on the ONNX file at `path` in place; returns what each
    did, for the manifest ("found": False where the graph has nothing the pass applies to, e.g. a CNN)."""
    import onnx

    if not passes:
        return {}
    model = onnx.load(str(path))
    done: dict[str, dict] = {}
    if "ort-attention-fusion" in passes:
        model, done["ort-attention-fusion"] = fuse_attention(model, keep_layer_nodes)
    if "ort-unfused-layernorm" in passes:
        count = keep_layernorm_unfused(model)
        done["ort-unfused-layernorm"] = {"residual_adds_as_sum": count, **({} if count else {"found": False})}
    onnx.save(model, str(path))
    return done
