"""onnxruntime's own quantizers (static QDQ, dynamic int8) on an fp32 ONNX, honouring a precision plan.

This is the ONNX path that does not depend on the PT2E -> ONNX export: quantize_static writes QDQ per channel with
scales calibrated on the recipe's real data; quantize_dynamic quantizes weights and computes activation scales at
run time (the fastest int8 on CPUs without VNNI for text models, DESIGN.md). Layers the plan keeps in float become
`nodes_to_exclude`: the ONNX node names of their Conv / MatMul / Gemm, found from the exporter's name-scope metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edgekd.errors import EdgekdError

LAYER_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def onnx_nodes_for_modules(onnx_path, module_names: Iterable[str] | None = None) -> dict[str, list[str]]:
    """{module FQN: [ONNX node names]} for the weight-bearing nodes of each module."""
    import onnx

    from edgekd.quant.inspect import _trace_weight, onnx_module_of

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = set(module_names) if module_names is not None else None
    inits = {i.name: i for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    mapping: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2:
            continue
        precision, weight = _trace_weight(node.input[1], inits, producers)
        if precision is None:
            continue
        module = onnx_module_of(node, names, weight)
        if module is not None:
            mapping.setdefault(module, []).append(node.name)
    return mapping


def plan_to_onnx_nodes(plan, onnx_path, module_names: Iterable[str]) -> dict[str, str]:
    """{ONNX node name: precision} for every node of a layer the plan keeps in floating point.

    Raises when a float layer has no node in the file (a rename would otherwise quantize it silently).
    """
    names = list(module_names)
    mapping = onnx_nodes_for_modules(onnx_path, names)
    out: dict[str, str] = {}
    missing = []
    for module, precision in plan.float_layers(names).items():
        nodes = mapping.get(module)
        if not nodes:
            missing.append(module)
            continue
        for node in nodes:
            out[node] = precision
    if missing:
        raise EdgekdError(f"no ONNX node found for layer(s) the plan keeps in float: {', '.join(missing[:5])}",
                          file=str(onnx_path), hint="export with torch.onnx.export(dynamo=True), which records "
                                                    "module name scopes on every node")
    return out


def plan_to_trt_layers(plan, onnx_path, module_names: Iterable[str] | None = None) -> dict[str, str]:
    """{TensorRT layer name: fp16|fp32} for --layerPrecisions; TensorRT's ONNX parser names layers after nodes."""
    names = list(module_names) if module_names is not None else list(onnx_nodes_for_modules(onnx_path))
    return plan_to_onnx_nodes(plan, onnx_path, names)


class _Reader:
    def __init__(self, names: list[str], samples: Sequence[Sequence]):
        self._iter = iter([{n: _np(x) for n, x in zip(names, sample)} for sample in samples])

    def get_next(self):
        return next(self._iter, None)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def ort_quantize(fp32_onnx, out_path, mode: str = "static", calibration_inputs: Sequence[Sequence] = (),
                 nodes_to_exclude: Iterable[str] = (), per_channel: bool = True, symmetric_activations: bool = False
                 ) -> dict:
    """Quantize `fp32_onnx` into `out_path` (written atomically); returns what was done, for the manifest."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    exclude = sorted(set(nodes_to_exclude))
    model = onnx.load(str(fp32_onnx))
    present = {n.name for n in model.graph.node}
    unknown = [n for n in exclude if n not in present]
    if unknown:
        raise EdgekdError(f"nodes_to_exclude names node(s) not in the model: {', '.join(unknown[:5])}",
                          file=str(fp32_onnx))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}.onnx")  # onnxruntime wants an .onnx name
    try:
        if mode == "static":
            if not calibration_inputs:
                raise EdgekdError("static quantization needs calibration inputs", key="data.calibration_samples")
            import onnxruntime as ort

            session = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            del session
            quantize_static(str(fp32_onnx), str(tmp), _Reader(names, calibration_inputs),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                            op_types_to_quantize=None, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True})
        elif mode == "dynamic":
            # quantize_dynamic rewrites Gemm as MatMul(+Add) named <node>_MatMul before it reads nodes_to_exclude
            renamed = [f"{n}_MatMul" for n in exclude]
            quantize_dynamic(str(fp32_onnx), str(tmp), per_channel=per_channel, weight_type=QuantType.QInt8,
                             nodes_to_exclude=exclude + renamed, op_types_to_quantize=["MatMul", "Gemm"])
        else:
            raise EdgekdError(f"unknown onnxruntime quantization mode {mode!r}", key="stages.ptq.onnx_mode",
                              hint="allowed: static, dynamic")
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"mode": mode, "per_channel": per_channel, "nodes_excluded": exclude,
            "calibration_samples": len(calibration_inputs) if mode == "static" else 0}
