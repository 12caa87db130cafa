"""Causal LM students (Qwen2/Llama families): KV-cache export to ExecuTorch (8da4w) and ONNX (int4/int8), greedy
decoding in each runtime, perplexity on a real corpus, prefill/decode tokens/s.

The pipeline stages dispatch here by task ("causal-lm"): llm/pipeline.py, llm/models.py. Everything heavy is imported inside the functions so
`import edgekd.llm` stays cheap (docs/architecture.md, rule 8).
"""
