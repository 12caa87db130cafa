"""KV-cache .pte of a tiny random Qwen2 (8da4w, XNNPACK) run in the ExecuTorch runtime against PyTorch.

Slow: lowering takes minutes on the shared 2-core machine even for a 2-layer model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ..llm_support import tiny_qwen2

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("precision", ["fp32", "8da4w"])
def test_pte_kv_cache_prefill_steps_and_reset(tmp_path, precision):
    from edgekd.llm.decode import greedy, pte_session, torch_session
    from edgekd.llm.export import export_pte

    torch.set_num_threads(1)
    model = tiny_qwen2()
    path = tmp_path / f"tiny.{precision}.pte"
    details = export_pte(model, path, max_seq_len=64, precision=precision, group_size=32, embedding_quant="int8")
    assert path.stat().st_size > 0 and details["delegated_nodes"] > 0
    outside = details["non_delegated_ops"]  # ExecuTorch's LLM kernels, not index_put and repeated KV heads
    assert outside.get("llama_custom_sdpa_default") == 2 and outside.get("auto_functionalized_v2") == 4
    assert not any("index_put" in op or "expand" in op or "repeat" in op for op in outside), outside
    ref, art = torch_session(model, 64), pte_session(path, 64)
    tol = 1e-4 if precision == "fp32" else 0.5
    ids = list(range(3, 13))
    np.testing.assert_allclose(art.feed(ids), ref.feed(ids), atol=tol)
    np.testing.assert_allclose(art.feed([42]), ref.feed([42]), atol=tol)
    first = (art.reset(), art.feed(ids))[1]
    ref.reset()
    np.testing.assert_allclose(first, ref.feed(ids), atol=tol)  # position 0 resets the program's static cache
    assert len(greedy(art, [1, 2, 3], 5)) == 5
