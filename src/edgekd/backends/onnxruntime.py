"""CPUs: onnxruntime with the quantized ONNX format the profile's `isa` computes exactly (edgekd/quant/ort.py)."""

from edgekd.backends.executorch_xnnpack import CLAMPS
from edgekd.backends.record import Backend

BACKEND = Backend(
    name="onnxruntime",
    summary="ONNX on onnxruntime's CPU provider (x86 and ARM servers, laptops)",
    formats=("onnx",),
    device_runtime="onnxruntime",
    quantizer="xnnpack",  # the same PT2E scheme as XNNPACK; onnxruntime executes QDQ with any zero point
    layer_precisions=("int8", "fp32"),  # QDQ int8 or float nodes; the CPU provider has no fast fp16 kernels
    int4_weight_only=False,
    fused_activations=CLAMPS,
    text_activations="static",
    onnx_mode_images="ort_static",  # onnxruntime's static QDQ, the kernels it is tuned for
    onnx_mode_text="ort_dynamic",
    onnx_verify="target-isa",
    onnx_graph_passes=("ort-attention-fusion", "ort-unfused-layernorm"),  # edgekd/export/ort_graph.py
    qdq_activation_type="uint8",  # what onnxruntime's x86 kernels fuse (record.py QDQ_ACTIVATION_TYPES)
    optimization_profile=False,
    causal_lm_formats=("onnx",),  # int4 MatMulNBits / int8 dynamic ONNX with past key/values
)
