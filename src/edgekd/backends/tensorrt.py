"""Jetson (Orin): a Q/DQ ONNX for TensorRT's explicit quantization, the trtexec command, an engine where TensorRT
imports (edgekd/export/tensorrt.py)."""

from edgekd.backends.executorch_xnnpack import CLAMPS
from edgekd.backends.record import Backend

BACKEND = Backend(
    name="tensorrt",
    summary="Q/DQ ONNX and a TensorRT engine (Jetson Orin)",
    formats=("onnx", "engine"),
    device_runtime="tensorrt",
    quantizer="symmetric",  # explicit quantization wants zero point 0 for activations too
    # a layer without Q/DQ runs at --layerPrecisions=<layer>:fp16 (or fp32) in the builder
    layer_precisions=("int8", "fp16", "fp32"),
    int4_weight_only=True,  # int4 weight-only GEMM
    # TensorRT's pointwise fusion takes any of these into the Conv/GEMM kernel
    fused_activations=CLAMPS | {"aten.gelu.default", "aten.silu.default", "aten.sigmoid.default"},
    text_activations="static",  # explicit Q/DQ is static
    onnx_mode_images="pt2e",
    onnx_mode_text="pt2e",
    onnx_verify="as-written",  # the target is a Jetson, not this host's x86 int8 kernels
    onnx_graph_passes=(),  # TensorRT parses standard ONNX ops, not onnxruntime's contrib ops
    qdq_activation_type="int8",  # explicit quantization: int8 with zero point 0
    optimization_profile=True,
    causal_lm_formats=(),  # a KV-cache TensorRT engine (TensorRT-LLM) is not built by edgekd
)
