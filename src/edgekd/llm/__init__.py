"""Causal LM students (Qwen2/Llama families): KV-cache export to ExecuTorch (8da4w) and ONNX (int4/int8), greedy
decoding in each runtime, perplexity on a real corpus, prefill/decode tokens/s.

The causal-LM task record (edgekd/tasks.py) points the export, verify, bench and qat stages here: llm/stages.py,
llm/qat.py; llm/models.py loads GGUF and Hugging Face checkpoints. Everything heavy is imported inside the functions so
`import edgekd.llm` stays cheap (docs/architecture.md, rule 8).
"""
