"""Quantization building blocks shared by ptq, qat, sensitivity and mixed precision."""
