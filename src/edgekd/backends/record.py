"""What edgekd knows about one target backend, as data: one `Backend` record per module in this package.

Every stage asks the record instead of comparing backend names (rule 13 of docs/architecture.md), so a new target is
one module here plus a device profile. `tests/unit/test_backends.py` checks that every registered record declares
every field with an allowed value.
"""

from __future__ import annotations

from dataclasses import dataclass

# The artifact formats edgekd writes and the runtime that executes each one.
FORMAT_RUNTIME = {"pte": "executorch", "onnx": "onnxruntime", "engine": "tensorrt"}
# PT2E quantization schemes (edgekd/quant/pt2e.py make_quantizer): asymmetric int8 activations with symmetric
# per-channel weights ("xnnpack"), or zero-point-0 activations as TensorRT's explicit quantization wants ("symmetric").
QUANTIZER_SCHEMES = ("xnnpack", "symmetric")
# Which quantizer writes a quantized ONNX (edgekd/export/onnx.py): the Q/DQ of the converted PT2E model, or
# onnxruntime's own static / dynamic quantizer (edgekd/quant/ort.py).
ONNX_MODES = ("pt2e", "ort_static", "ort_dynamic")
# How verify executes a quantized ONNX (edgekd/stages/verify.py): "as-written" runs the Q/DQ exactly (graph
# optimizations BASIC) because the target is not this host's x86 int8 kernels; "target-isa" uses the default session
# where this host has the profile's isa and the exact runner where it does not.
ONNX_VERIFY = ("as-written", "target-isa")
# Graph passes on the fp32 ONNX before quantization (edgekd/export/ort_graph.py GRAPH_PASSES): onnxruntime's contrib
# fused ops, so only for a backend whose device runs onnxruntime; a portable or TensorRT ONNX keeps standard ops.
ONNX_GRAPH_PASSES = ("ort-attention-fusion", "ort-unfused-layernorm")
# How a PT2E Q/DQ ONNX stores activations (edgekd/export/qdq_onnx.py): the same real values either way. onnxruntime
# on x86 fuses DQ -> Conv/Add -> Q into QLinearConv/QLinearAdd only for uint8 activations where a tensor feeds
# several nodes (its s8 -> u8 conversion skips those, e.g. every residual add's input); TensorRT takes int8 only.
QDQ_ACTIVATION_TYPES = ("int8", "uint8")
PRECISIONS = ("int8", "int4", "fp16", "fp32")
ACTIVATION_MODES = ("static", "dynamic")


@dataclass(frozen=True)
class Backend:
    name: str                           # the profile's `backend:` value
    summary: str                        # one line for `edgekd --help` and the docs
    formats: tuple[str, ...]            # what `export` writes when the recipe names no formats
    device_runtime: str                 # the runtime the device executes; only its artifacts meet the device budgets
    quantizer: str                      # PT2E scheme, one of QUANTIZER_SCHEMES
    layer_precisions: tuple[str, ...]   # precisions one layer can hold inside a mixed artifact
    int4_weight_only: bool              # has int4 weight-only GEMMs: sensitivity measures int4 for Linear layers
    fused_activations: frozenset[str]   # aten activation ops fused into the Conv/Linear before them at lowering
    text_activations: str               # PT2E activations for text encoders under `activations: auto`
    onnx_mode_images: str               # quantized ONNX writer for image models under `onnx_mode: auto`
    onnx_mode_text: str                 # ... and for text encoders (input_ids)
    onnx_verify: str                    # one of ONNX_VERIFY
    onnx_graph_passes: tuple[str, ...]  # ONNX_GRAPH_PASSES run on the fp32 ONNX before quantization; () = none
    qdq_activation_type: str            # one of QDQ_ACTIVATION_TYPES: activations of a PT2E Q/DQ ONNX
    optimization_profile: bool          # batch/sequence axes stay dynamic through quantization (TensorRT profiles)
    causal_lm_formats: tuple[str, ...]  # KV-cache exports of a causal LM (edgekd/llm/stages.py); () = not supported
