"""pte_session on a program whose second input is the start position (ExecuTorch's export_llm: forward(tokens[1, s],
input_pos[1])) rather than edgekd's cache_position[s]: a tiny random Llama exported by export_llama itself, fed a
prompt and then single tokens, must give the logits of the same model run on the whole sequence without a cache.

Slow: export_llama's lowering of even a 2-layer model takes about 45 s of CPU (87 s on the shared 2 cores).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def _tiny_export_llm_pte(tmp_path, full_logits: bool):
    from executorch.examples.models.llama.export_llama_lib import export_llama
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs
    from executorch.extension.llm.export.config.llm_config import LlmConfig

    params = {"dim": 64, "hidden_dim": 128, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "vocab_size": 96,
              "norm_eps": 1e-5, "rope_theta": 10000.0}
    torch.manual_seed(0)
    eager = construct_transformer(ModelArgs(max_seq_len=32, max_context_len=32, generate_full_logits=True, **params))
    for p in eager.parameters():  # random weights of a trained model's scale, not the init's near-constant norms
        torch.nn.init.normal_(p, std=0.2)
    (tmp_path / "params.json").write_text(json.dumps(params))
    torch.save(eager.state_dict(), tmp_path / "ckpt.pth")
    cfg = LlmConfig()
    cfg.base.checkpoint, cfg.base.params = str(tmp_path / "ckpt.pth"), str(tmp_path / "params.json")
    cfg.model.use_kv_cache = cfg.model.use_sdpa_with_kv_cache = True
    cfg.export.max_seq_length = cfg.export.max_context_length = 32
    cfg.export.output_dir, cfg.export.output_name = str(tmp_path), str(tmp_path / "tiny.pte")  # verbatim path
    cfg.backend.xnnpack.enabled = True
    cfg.debug.generate_full_logits = full_logits
    export_llama(cfg)
    return eager.eval(), tmp_path / "tiny.pte"


def test_start_position_program_matches_full_forward(tmp_path):
    from edgekd.llm.decode import perplexity, pte_session

    torch.set_num_threads(1)
    eager, path = _tiny_export_llm_pte(tmp_path, full_logits=True)
    ids = [5, 17, 3, 88, 41, 9, 60]
    with torch.no_grad():
        ref = eager(torch.tensor([ids + [42, 7]]))[0].numpy()
    session = pte_session(path, 32)  # positions="auto" reads input_pos[1] from the program
    np.testing.assert_allclose(session.feed(ids), ref[:7], atol=1e-4)
    np.testing.assert_allclose(session.feed([42]), ref[7:8], atol=1e-4)
    np.testing.assert_allclose(session.feed([7]), ref[8:9], atol=1e-4)
    session.reset()
    np.testing.assert_allclose(session.feed(ids), ref[:7], atol=1e-4)  # position 0 again: the old cache is masked
    forced = pte_session(path, 32, positions="range")  # edgekd's layout: a wrong position input is refused
    with pytest.raises(Exception):
        forced.feed(ids)
    assert perplexity(pte_session(path, 32), ids * 4, 31)["tokens_scored"] == 27
