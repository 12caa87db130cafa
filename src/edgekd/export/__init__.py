"""Exporters: ExecuTorch .pte (XNNPACK), ONNX (onnxruntime), TensorRT Q/DQ ONNX + engine / trtexec command."""
