"""QAT-KD of a tiny random Qwen2 through the real qat -> export -> verify stages: the trained weights survive the
8da4w .pte export (the ExecuTorch runtime's perplexity equals PyTorch's quantize_8da4w of the trained weights), and
verify still judges the .pte against the ORIGINAL fp32 model, not the trained one.

Slow: lowering even a 2-layer 8da4w program to XNNPACK takes minutes on the shared 2-core machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.test_llm_qat_kd import llm_context, needs_corpus

pytestmark = [pytest.mark.slow, pytest.mark.integration, needs_corpus]


def test_qat_kd_weights_survive_the_8da4w_pte_and_verify_compares_with_the_original(tmp_path):
    from edgekd.llm.decode import pte_session, torch_session
    from edgekd.llm.export import quantize_8da4w
    from edgekd.llm.qat import pytorch_perplexity
    from edgekd.stages import export as export_stage
    from edgekd.stages import qat as qat_stage
    from edgekd.stages import verify as verify_stage

    torch.set_num_threads(1)
    ctx = llm_context(tmp_path)
    ctx.recipe.llm.pte_variants = ["8da4w"]
    ctx.recipe.llm.onnx_variants = []
    ctx.recipe.llm.max_new_tokens = 4
    ctx.recipe.llm.prompts = ["It is a truth", "Mr. Bennet"]  # bytes are tokens here: short, inside the 64 cache
    original = ctx.model.lm().hf_model
    qat_stage.run(ctx, ctx.recipe.stages.qat)
    export_stage.run(ctx, ctx.recipe.stages.export)
    verify_stage.run(ctx, ctx.recipe.stages.verify)

    (pte,) = ctx.artifacts
    assert pte.precision == "8da4w" and pte.format == "pte"
    ppl = ctx.metrics["qat"]["pytorch_perplexity"]
    # verify's reference is the model as loaded (same perplexity as measured on it before training) ...
    assert ctx.metrics["llm"]["fp32_pytorch"]["perplexity"] == pytest.approx(ppl["fp32_original"], rel=1e-6)
    assert ctx.metrics["llm"]["fp32_pytorch"]["perplexity"] == pytest.approx(pytorch_perplexity(original, ctx),
                                                                             rel=1e-6)
    # ... and the .pte computes what PyTorch's quantize_8da4w makes of the trained weights, not of the original ones.
    assert pte.parity["perplexity"] == pytest.approx(ppl["8da4w_after"], rel=0.01)
    # Logit by logit, the .pte is far closer to the trained weights' 8da4w than to the original weights' 8da4w.
    ids = list(range(40, 72))
    pte_logits = pte_session(pte.path, 64).feed(ids)
    after = quantize_8da4w(ctx.model.lm().hf_model, 32, "int8")[0]
    before = quantize_8da4w(original, 32, "int8")[0]
    to_after = np.abs(pte_logits - torch_session(after, 64).feed(ids)).mean()
    to_before = np.abs(pte_logits - torch_session(before, 64).feed(ids)).mean()
    assert to_after < 0.5 * to_before, (to_after, to_before)
    assert pte.parity["perplexity_fp32"] == ctx.metrics["llm"]["fp32_pytorch"]["perplexity"]
