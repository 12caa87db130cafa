"""A read-only index over an ONNX graph: who produces and consumes each tensor, constant values, element types.

The lint rules and the Q/DQ rewrites both walk producer/consumer edges and read constant scales and zero points;
this keeps that in one place (plain onnx, no TensorRT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GraphIndex:
    model: object  # onnx.ModelProto
    producer: dict = field(default_factory=dict)  # tensor name -> NodeProto
    consumers: dict = field(default_factory=dict)  # tensor name -> [NodeProto]
    initializers: dict = field(default_factory=dict)  # name -> TensorProto
    constant_nodes: dict = field(default_factory=dict)  # output name -> Constant NodeProto
    elem_type: dict = field(default_factory=dict)  # tensor name -> onnx TensorProto data type (when known)
    graph_outputs: set = field(default_factory=set)

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant-node output, else None (computed at run time)."""
        from onnx import helper, numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.constant_nodes.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    return np.asarray(helper.get_attribute_value(attr))
        return None

    def const_dtype(self, name: str) -> int | None:
        if name in self.initializers:
            return self.initializers[name].data_type
        node = self.constant_nodes.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return attr.t.data_type
        return self.elem_type.get(name)

    def users(self, name: str) -> list:
        return self.consumers.get(name, [])

    def opset(self) -> int:
        return next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0)


def attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def index_graph(model, infer_types: bool = True) -> GraphIndex:
    """Index `model` (an onnx.ModelProto); element types come from ONNX shape inference when it succeeds."""
    import onnx

    idx = GraphIndex(model=model)
    graph = model.graph
    idx.initializers = {i.name: i for i in graph.initializer}
    for node in graph.node:
        for out in node.output:
            idx.producer[out] = node
        for inp in node.input:
            if inp:
                idx.consumers.setdefault(inp, []).append(node)
        if node.op_type == "Constant":
            idx.constant_nodes[node.output[0]] = node
    idx.graph_outputs = {o.name for o in graph.output}
    typed = model
    if infer_types:
        try:
            typed = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - inference is best effort; rules that need types say so
            typed = model
    for vi in list(typed.graph.value_info) + list(typed.graph.input) + list(typed.graph.output):
        if vi.type.HasField("tensor_type"):
            idx.elem_type[vi.name] = vi.type.tensor_type.elem_type
    for name, init in idx.initializers.items():
        idx.elem_type[name] = init.data_type
    return idx
