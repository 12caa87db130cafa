"""LoRA adapters through edgekd's loader: a peft adapter on a tiny random Qwen2, saved the way training saves it,
merged by load_causal_lm(folder, adapter) into plain Linear weights that the KV-cache exporters take as any model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ..llm_support import tiny_qwen2

pytest.importorskip("peft", reason="peft is in the llm extra: pip install -e '.[llm]'")

IDS = [1, 5, 9, 77, 200, 3, 41, 128]


def save_tiny_qwen2(folder: Path) -> Path:
    """A tiny random Qwen2 and a word-level tokenizer built offline: a folder load_causal_lm accepts."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tiny_qwen2(0).save_pretrained(folder)
    words = ["<unk>", "<eos>"] + "it is a truth universally acknowledged".split()
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>").save_pretrained(folder)
    return folder


def _logits(model) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].numpy()


@pytest.fixture(scope="module")
def lora_case(tmp_path_factory):
    """(base folder, adapter folder, PeftModel logits, base logits). The LoRA B matrices are set non-zero: peft's
    default B = 0 would make merging a no-op and the test vacuous."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lora")
    folder = save_tiny_qwen2(root / "base")
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    base_logits = _logits(base)
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 lora_dropout=0.0, init_lora_weights=False)).eval()
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)
    peft_logits = _logits(peft_model)
    peft_model.save_pretrained(root / "adapter")
    return folder, root / "adapter", peft_logits, base_logits


@pytest.fixture(scope="module")
def merged_model(lora_case):
    from edgekd.llm.models import load_causal_lm

    folder, adapter, _, _ = lora_case
    model, tokenizer = load_causal_lm(folder, adapter)
    assert tokenizer.eos_token == "<eos>"  # the folder's own tokenizer (transformers picks the Qwen2 class for it)
    return model


def test_load_causal_lm_merges_the_adapter_into_plain_linear_layers(lora_case, merged_model):
    folder, _, peft_logits, base_logits = lora_case
    assert np.abs(peft_logits - base_logits).max() > 0.05  # the adapter really changes the model
    np.testing.assert_allclose(_logits(merged_model), peft_logits, atol=1e-5)
    peft_modules = [n for n, m in merged_model.named_modules() if type(m).__module__.startswith("peft")]
    assert peft_modules == []
    for layer in merged_model.model.layers:
        for proj in (layer.self_attn.q_proj, layer.self_attn.v_proj, layer.self_attn.k_proj):
            assert type(proj) is torch.nn.Linear
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    attn, base_attn = merged_model.model.layers[0].self_attn, base.model.layers[0].self_attn
    assert not torch.equal(attn.q_proj.weight, base_attn.q_proj.weight)  # LoRA targets changed
    assert torch.equal(attn.k_proj.weight, base_attn.k_proj.weight)  # the rest is untouched
    assert set(merged_model.state_dict()) == set(base.state_dict())  # no lora_A/lora_B left to export


def test_merged_model_exports_to_onnx_with_the_adapter_in_the_weights(lora_case, merged_model, tmp_path):
    from edgekd.llm.decode import onnx_session, torch_session
    from edgekd.llm.export import export_onnx_fp32

    _, _, peft_logits, _ = lora_case
    export_onnx_fp32(merged_model, tmp_path / "lora.onnx", max_seq_len=32)
    session, ref = onnx_session(tmp_path / "lora.onnx", 32), torch_session(merged_model, 32)
    np.testing.assert_allclose(session.feed(IDS), peft_logits, atol=1e-4)
    ref.feed(IDS)
    np.testing.assert_allclose(session.feed([7]), ref.feed([7]), atol=1e-4)  # a cached step agrees too


@pytest.mark.slow  # lowering to XNNPACK: about 30 s on the shared 2-core box
def test_merged_model_exports_to_pte_with_the_adapter_in_the_weights(lora_case, merged_model, tmp_path):
    from edgekd.llm.decode import pte_session, torch_session
    from edgekd.llm.export import export_pte

    _, _, peft_logits, _ = lora_case
    details = export_pte(merged_model, tmp_path / "lora.pte", max_seq_len=32, precision="fp32")
    assert details["delegated_nodes"] > 0
    session, ref = pte_session(tmp_path / "lora.pte", 32), torch_session(merged_model, 32)
    np.testing.assert_allclose(session.feed(IDS), peft_logits, atol=1e-4)
    ref.feed(IDS)
    np.testing.assert_allclose(session.feed([7]), ref.feed([7]), atol=1e-4)


def test_recipe_adapter_is_merged_once_at_load_before_the_reference(lora_case, tmp_path):
    """llm.lora_adapter: the causal-LM task's after_load part merges it into the bundle the stages share (module,
    causal_lm.hf_model), once; QAT-KD, export and verify then all see the merged weights."""
    from edgekd.config.schema import Profile, Recipe
    from edgekd.context import Context
    from edgekd.llm.models import load_causal_lm_bundle

    folder, adapter, peft_logits, _ = lora_case
    recipe = Recipe(name="lora", model={"source": f"hf:{folder}", "task": "causal-lm"},
                    data={"source": "py:edgekd.llm.corpus:austen_data"}, llm={"lora_adapter": str(adapter)})
    ctx = Context(recipe=recipe, profile=Profile(name="p", backend="onnxruntime"), recipe_path=tmp_path / "r.yaml",
                  profile_path=tmp_path / "p.yaml", out_dir=tmp_path)
    ctx.model = load_causal_lm_bundle(folder)
    ctx.task_record.part("after_load")(ctx)
    np.testing.assert_allclose(_logits(ctx.model.lm().hf_model), peft_logits, atol=1e-5)
    with torch.no_grad():
        last = ctx.model.module(torch.tensor([IDS]))[0].numpy()
    np.testing.assert_allclose(last, peft_logits[-1], atol=1e-5)  # the generic module wraps the merged model
    merged = ctx.model.lm().hf_model
    ctx.task_record.part("after_load")(ctx)
    assert ctx.model.lm().hf_model is merged  # once
    assert [(d.stage, d.subject, d.action) for d in ctx.decisions] == [("load", "llm.lora_adapter", "merged")]
