"""onnxruntime's own quantizers (static QDQ, dynamic int8) on an fp32 ONNX, honouring a precision plan.

This is the ONNX path that does not depend on the PT2E -> ONNX export: quantize_static writes QDQ per channel with
scales calibrated on the recipe's real data; quantize_dynamic quantizes weights and computes activation scales at
run time (the text-model path). The activation / weight types follow the target CPU (Profile.isa, ISA_FORMATS).
Layers the plan keeps in float become `nodes_to_exclude`: the ONNX node names of their Conv / MatMul / Gemm, found
from the exporter's name-scope metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class IsaFormat:
    """How onnxruntime's quantizers write int8 for one target ISA (Profile.isa): QDQ activation / weight types."""

    activations: str  # "u8" | "s8" (static QDQ; dynamic quantization always computes u8 activations)
    weights: str      # "s8" | "u8", per channel
    reduce_range: bool  # 7-bit weights
    why: str

    @property
    def name(self) -> str:
        return f"{self.activations}{self.weights}".upper() + (" reduce_range" if self.reduce_range else "")


# onnxruntime's quantization guide: S8S8 QDQ is the default; U8S8 saturates on x86 without VNNI, where reduce_range
# or U8U8 is the remedy. Measured on an AVX-512 VNNI host, onnxruntime 1.32 default session, 2 threads, interleaved,
# EfficientNet-Lite0 static QDQ per channel, stem and first depthwise conv kept fp32 (int8 / fp32 ONNX p50 over two
# runs; top-1 agreement with fp32 on 96 photo crops): U8S8 0.56-0.62 (0.97); U8S8 reduce_range 0.60 (0.875: 7-bit
# weights cost accuracy); S8S8 0.87-0.90 (14 depthwise convs stay DQ -> Conv -> Q, no fused kernel); U8U8 3.0-3.2
# (fused, but QLinearConv's u8u8 path took 129 ms of 134 vs 24 ms for u8s8 in the per-op profile). MiniLM-L6
# dynamic: cosine 0.992 with full-range per-channel s8 weights, 0.991 reduce_range, 0.958 per-tensor. arm64's S8S8
# follows the guide; not measured on an ARM host here.
_VNNI = IsaFormat("u8", "s8", False, "VNNI multiplies u8 x s8 straight into int32 (no int16 saturation): full-range "
                                     "s8 weights and onnxruntime's fastest x86 kernels (U8S8; S8S8 leaves depthwise "
                                     "convs unfused, U8U8's conv kernel is slower than fp32)")
ISA_FORMATS = {
    "avx512-vnni": _VNNI,
    "avx-vnni": _VNNI,
    "avx2": IsaFormat("u8", "s8", True, "without VNNI, u8 x s8 pairs are summed in saturating int16 (VPMADDUBSW): "
                                        "7-bit weights keep the sum exact and keep the fast U8S8 kernels (U8U8, the "
                                        "guide's other remedy, ran 3x slower than fp32 on EfficientNet-Lite0)"),
    "arm64": IsaFormat("s8", "s8", False, "onnxruntime's default S8S8 QDQ; ARM's signed dot products (sdot) take "
                                          "s8 x s8 into int32 without saturation"),
}
# Dynamic int8 is the text-model path: linear layers and embedding tables (Gather; a quarter of MiniLM's bytes).
# Convolutions are left to the static path.
DYNAMIC_OPS = ["MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization"]


def isa_format(isa: str) -> IsaFormat:
    if isa not in ISA_FORMATS:
        raise EdgekdError(f"unknown isa {isa!r}", key="profile.isa", hint=f"allowed: {', '.join(ISA_FORMATS)}")
    return ISA_FORMATS[isa]


def ort_quantize(fp32_onnx, out_path, mode: str = "static", calibration_inputs: Sequence[Sequence] = (),
                 nodes_to_exclude: Iterable[str] = (), input_names: Sequence[str] | None = None,
                 isa: str = "avx2") -> dict:
    """Quantize `fp32_onnx` into `out_path` with onnxruntime's quantizers in the format the target `isa` runs fast
    and exactly (ISA_FORMATS); written atomically. Returns what was done, for the manifest.

    `nodes_to_exclude` are node names of the fp32 file (plan_to_onnx_nodes); quantize_dynamic's Gemm -> MatMul
    renaming is handled here. Dynamic shapes of the fp32 file are kept (no symbolic shape inference that could fix
    them). Every edgekd path that runs onnxruntime's quantizers comes through this function.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgekd.report.atomic import atomic_path

    if mode not in ("static", "dynamic"):
        raise EdgekdError(f"unknown onnxruntime quantization mode {mode!r}", key="stages.ptq.onnx_mode",
                          hint="allowed: ort_static, ort_dynamic")
    if mode == "static" and not calibration_inputs:
        raise EdgekdError("static quantization needs calibration inputs", key="data.calibration_samples")
    fmt = isa_format(isa)
    qtype = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    exclude = sorted(set(nodes_to_exclude))
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    present = {n.name for n in model.graph.node}
    unknown = [n for n in exclude if n not in present]
    if unknown:
        raise EdgekdError(f"nodes_to_exclude names node(s) not in the model: {', '.join(unknown[:5])}",
                          file=str(fp32_onnx))
    names = list(input_names) if input_names is not None else [i.name for i in model.graph.input]
    del model
    with atomic_path(Path(out_path)) as tmp:
        pre = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
            if mode == "dynamic":
                quantize_dynamic(str(pre), str(tmp), weight_type=qtype[fmt.weights], per_channel=True,
                                 reduce_range=fmt.reduce_range,
                                 nodes_to_exclude=exclude + [f"{n}_MatMul" for n in exclude],
                                 op_types_to_quantize=DYNAMIC_OPS, extra_options={"MatMulConstBOnly": True})
            else:
                quantize_static(str(pre), str(tmp), _Reader(names, calibration_inputs), quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=fmt.reduce_range,
                                activation_type=qtype[fmt.activations], weight_type=qtype[fmt.weights],
                                nodes_to_exclude=exclude)
        finally:
            pre.unlink(missing_ok=True)
    activations = "u8 per call (dynamic)" if mode == "dynamic" else f"{fmt.activations} per tensor"
    weights = f"{fmt.weights} per-channel" + (", reduce_range (7-bit)" if fmt.reduce_range else "")
    return {"quantizer": f"onnxruntime {mode}", "isa": isa,
            "format": ("U8" + fmt.name[2:]) if mode == "dynamic" else fmt.name,
            "activations": activations, "weights": weights, "format_reason": fmt.why, "excluded_nodes": exclude,
            "calibration_samples": len(calibration_inputs) if mode == "static" else 0}


def matmul_nbits(src, dst, block_size: int = 32, symmetric: bool = True, accuracy_level: int | None = None) -> None:
    """onnxruntime's MatMulNBitsQuantizer: int4 weight-only on every MatMul with a constant weight (integer zero
    points when not `symmetric`), written atomically. Grids of our own choosing (a GGUF source's) are written by
    edgekd.quant.nbits instead."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from edgekd.report.atomic import atomic_path

    model = onnx.load(str(src))
    quantizer = MatMulNBitsQuantizer(model, block_size=block_size, is_symmetric=symmetric,
                                     accuracy_level=accuracy_level)
    quantizer.process()
    with atomic_path(Path(dst)) as tmp:
        onnx.save_model(quantizer.model.model, str(tmp))


def dynamic_int8_matmuls(src, dst, nodes_to_exclude: Iterable[str] = (), reduce_range: bool = True) -> None:
    """quantize_dynamic on MatMul/Gemm with a constant weight only (s8 per channel), written atomically: the causal-LM
    int8 path (edgekd.llm.export.quantize_onnx_int8 says why reduce_range and which nodes stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgekd.report.atomic import atomic_path

    with atomic_path(Path(dst)) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=list(nodes_to_exclude),
                         extra_options={"MatMulConstBOnly": True})
