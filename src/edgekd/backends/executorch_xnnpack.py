"""Phones (Snapdragon and other ARM SoCs): ExecuTorch .pte lowered to XNNPACK, plus an ONNX for portability."""

from edgekd.backends.record import Backend

# XNNPACK fuses clamp-style activations (relu, relu6 = hardtanh(0, 6)) into its Conv/GEMM output clamp.
CLAMPS = frozenset({"aten.relu.default", "aten.relu_.default", "aten.hardtanh.default", "aten.hardtanh_.default",
                    "aten.clamp.default"})

BACKEND = Backend(
    name="executorch-xnnpack",
    summary="ExecuTorch .pte on XNNPACK (phones), plus an ONNX for portability",
    formats=("pte", "onnx"),
    device_runtime="executorch",
    quantizer="xnnpack",
    # layers left out of the PT2E quantizer run as fp32 XNNPACK ops; per-layer fp16 would need the fp32 graph cast
    # layer by layer, which the PT2E -> to_edge flow does not do
    layer_precisions=("int8", "fp32"),
    int4_weight_only=True,  # 8da4w Linear kernels
    fused_activations=CLAMPS,
    # static per-tensor ranges lose a transformer's residual outlier channels (MiniLM cosine ~0.6); XNNPACK has
    # dynamically quantized Linear
    text_activations="dynamic",
    onnx_mode_images="pt2e",  # the ONNX carries the .pte's (or the QAT-learned) scales
    onnx_mode_text="ort_dynamic",  # per-token ranges: cosine 0.991 on MiniLM
    onnx_verify="as-written",  # the target is an ARM phone, not this host's x86 int8 kernels
    onnx_graph_passes=(),  # its ONNX is the portable one: standard ops only
    qdq_activation_type="uint8",  # the same values as int8; onnxruntime fuses uint8 on x86 (record.py)
    optimization_profile=False,
    causal_lm_formats=("pte", "onnx"),  # 8da4w .pte; int4/int8 ONNX for portability
)
