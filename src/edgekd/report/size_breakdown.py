"""Per-part size breakdowns of an artifact, what `edgekd size check` (report/size.py) attributes growth to: for .onnx
each initializer and the bytes per consuming op type, for .pte the program flatbuffer, each delegate blob, each
constant-segment tensor and each named-data blob (XNNPACK's weights)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekd.errors import EdgekdError

def onnx_breakdown(path: Path) -> dict:
    """Initializer bytes by name and by the op type that consumes them (first consumer), plus Constant nodes."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise EdgekdError(f"not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          file=str(path)) from exc
    parts: dict[str, int] = {}
    groups: dict[str, int] = {}

    def tensor_bytes(t) -> int:
        for entry in t.external_data:
            if entry.key == "length":
                return int(entry.value)
        if t.raw_data:
            return len(t.raw_data)
        numel = 1
        for d in t.dims:
            numel *= int(d)
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except Exception:  # noqa: BLE001 - unusual dtypes (strings): count the stored fields instead
            itemsize = 4
        return numel * itemsize

    graphs = [model.graph]
    consumers: dict[str, str] = {}
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and node.op_type == "Constant":
                    key = f"{node.output[0]} (Constant)"
                    parts[key] = tensor_bytes(attr.t)
                    groups["Constant"] = groups.get("Constant", 0) + parts[key]
                if attr.g is not None and attr.g.ByteSize():
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
        for init in graph.initializer:
            parts[init.name] = tensor_bytes(init)
    for name, size in parts.items():
        if name.endswith(" (Constant)"):
            continue
        op = consumers.get(name, "unused")
        groups[op] = groups.get(op, 0) + size
    return {"parts": parts, "groups": groups}


def pte_breakdown(path: Path) -> dict:
    """ExecuTorch program parts: flatbuffer, delegate blobs, constant-segment tensors, named data (XNNPACK weights)."""
    try:
        from executorch.exir._serialize._program import _flatbuffer_to_program, _get_extended_header
    except ImportError as exc:
        raise EdgekdError("executorch is not installed: cannot attribute .pte growth", file=str(path)) from exc
    data = Path(path).read_bytes()
    header = _get_extended_header(data)
    program_size = header.program_size if header is not None and header.is_valid() else len(data)
    base = header.segment_base_offset if header is not None and header.is_valid() else 0
    try:
        program = _flatbuffer_to_program(data[:program_size])
    except Exception as exc:  # noqa: BLE001 - flatbuffer parsing raises assorted errors
        raise EdgekdError(f"not a readable ExecuTorch program: {exc}", file=str(path)) from exc
    parts: dict[str, int] = {"program flatbuffer": program_size}
    groups: dict[str, int] = {"program flatbuffer": program_size}
    segment_sizes = [s.size for s in program.segments]

    def add(name: str, group: str, size: int) -> None:
        parts[name] = parts.get(name, 0) + size
        groups[group] = groups.get(group, 0) + size

    for plan in program.execution_plan:
        shapes = {}
        for value in plan.values:
            t = value.val
            if type(t).__name__ == "Tensor" and t.data_buffer_idx and t.allocation_info is None:
                shapes[t.data_buffer_idx] = f"{_scalar_name(t.scalar_type)}{list(t.sizes)}"
        for i, d in enumerate(plan.delegates):
            loc = getattr(d.processed.location, "name", str(d.processed.location))
            if loc == "SEGMENT" and d.processed.index < len(segment_sizes):
                size = segment_sizes[d.processed.index]
            elif d.processed.index < len(program.backend_delegate_data):
                size = len(program.backend_delegate_data[d.processed.index].data)
            else:
                size = 0
            add(f"delegate {plan.name}[{i}] {d.id}", f"delegate {d.id}", size)
        if program.constant_segment and len(program.constant_segment.offsets) > 1 and segment_sizes:
            offsets = list(program.constant_segment.offsets)
            seg_size = segment_sizes[program.constant_segment.segment_index]
            for idx in range(1, len(offsets)):
                end = offsets[idx + 1] if idx + 1 < len(offsets) else seg_size
                name = f"constant[{idx}] {shapes.get(idx, '')}".strip()
                if name not in parts:
                    add(name, "constant segment", end - offsets[idx])
        for idx, buf in enumerate(program.constant_buffer):
            if idx and len(buf.storage):
                add(f"constant[{idx}] {shapes.get(idx, '')}".strip(), "constant buffer (inline)", len(buf.storage))
    labels: dict[str, str] = {}
    for plan in program.execution_plan:
        for d in plan.delegates:
            loc = getattr(d.processed.location, "name", str(d.processed.location))
            if d.id == "XnnpackBackend" and loc == "SEGMENT" and d.processed.index < len(program.segments):
                seg = program.segments[d.processed.index]
                labels.update(xnnpack_weight_labels(data[base + seg.offset: base + seg.offset + seg.size]))
    for entry in program.named_data:
        if entry.segment_index < len(segment_sizes):
            label = labels.get(entry.key)
            name = f"named data {entry.key[:16]} {label}" if label else f"named data {entry.key}"
            add(name, "named data (delegate weights)", segment_sizes[entry.segment_index])
    return {"parts": parts, "groups": groups}


def xnnpack_weight_labels(blob: bytes) -> dict[str, str]:
    """{named-data key: "float32[32, 32]"} for the weights an XNNPACK delegate blob refers to.

    Why: XNNPACK stores weights as named data keyed by a content hash, so without this a grown model shows only
    hashes. The delegate's flatbuffer gives each constant's dtype and shape (tensor names are not kept by
    XNNPACK). Best effort: any parsing problem gives no labels, never a failed size check.
    """
    import os
    import tempfile

    try:
        from importlib import resources

        from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as xs
        from executorch.exir._serialize._flatbuffer import _flatc_decompile

        header = xs.XNNHeader.from_bytes(blob[: xs.XNNHeader.EXPECTED_LENGTH])
        flatbuffer = blob[header.flatbuffer_offset: header.flatbuffer_offset + header.flatbuffer_size]
        with tempfile.TemporaryDirectory() as tmp:
            schema = os.path.join(tmp, "schema.fbs")
            with open(schema, "wb") as fh:
                fh.write(resources.files(xs.serialization_package).joinpath("schema.fbs").read_bytes())
            with open(os.path.join(tmp, "graph.bin"), "wb") as fh:
                fh.write(flatbuffer)
            _flatc_decompile(tmp, schema, os.path.join(tmp, "graph.bin"))
            with open(os.path.join(tmp, "graph.json")) as fh:  # flatc writes bare inf/nan (clamp bounds)
                graph = json.loads(re.sub(r"(?<=[:\[,\s])[-+]?(inf|nan)\b", "null", fh.read()))
    except Exception:  # noqa: BLE001 - an older/newer XNNPACK format: sizes stay exact, only labels are lost
        return {}
    keys = {i: c.get("named_key", "") for i, c in enumerate(graph.get("constant_data") or [])}
    labels = {}
    for value in graph.get("xvalues") or []:
        tensor = value.get("xvalue_union") or {}
        tensor = tensor.get("tensor_value", tensor)  # quantized values wrap the plain tensor value
        key = keys.get(int(tensor.get("constant_buffer_idx") or 0))
        if key:
            dtype = str(tensor.get("datatype", "")).removeprefix("xnn_datatype_")
            labels[key] = f"{dtype}{list(tensor.get('dims') or [])}"
    return labels


_SCALAR = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
           11: "bool", 15: "bfloat16"}


def _scalar_name(st) -> str:
    value = getattr(st, "value", st)
    return _SCALAR.get(int(value), f"dtype{int(value)}")


def breakdown(path: Path) -> dict:
    """Bytes, sha256 and the per-part breakdown of one artifact (parts empty for formats we cannot parse)."""
    from edgekd.report.atomic import sha256_of

    path = Path(path)
    info = {"bytes": path.stat().st_size, "sha256": sha256_of(path), "format": path.suffix.lstrip(".")}
    if path.suffix == ".onnx":
        info.update(onnx_breakdown(path))
    elif path.suffix == ".pte":
        info.update(pte_breakdown(path))
    else:
        info.update({"parts": {}, "groups": {}})
    return info
