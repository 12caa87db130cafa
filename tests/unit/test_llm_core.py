"""edgekd.llm on tiny random Qwen2 models (2 layers, hidden 64, vocab 256): KV-cache ONNX export and its int4/int8
variants run in onnxruntime and agree with PyTorch step by step; config and error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.errors import EdgekdError

from ..llm_support import tiny_qwen2


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    from edgekd.llm.export import export_onnx_fp32, quantize_onnx_int4, quantize_onnx_int8

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("llm_onnx")
    model = tiny_qwen2()
    fp32 = folder / "tiny.fp32.onnx"
    details = {"fp32": export_onnx_fp32(model, fp32, max_seq_len=64)}
    details["int4"] = quantize_onnx_int4(fp32, folder / "tiny.int4.onnx", block_size=32)
    details["int8"] = quantize_onnx_int8(fp32, folder / "tiny.int8.onnx")
    return model, folder, details


def test_onnx_kv_cache_matches_pytorch_prefill_and_steps(onnx_files):
    from edgekd.llm.decode import onnx_session, torch_session

    model, folder, details = onnx_files
    assert details["fp32"]["layers"] == 2 and details["fp32"]["kv_heads"] == 2
    ref, art = torch_session(model, 64), onnx_session(folder / "tiny.fp32.onnx", 64)
    ids = list(range(3, 13))
    np.testing.assert_allclose(art.feed(ids), ref.feed(ids), atol=1e-4)
    for token in (7, 99, 200):  # one token at a time, reading the growing past key/values
        np.testing.assert_allclose(art.feed([token]), ref.feed([token]), atol=1e-4)
    assert art.pos == ref.pos == 13
    art.reset()
    ref.reset()
    np.testing.assert_allclose(art.feed([1, 2]), ref.feed([1, 2]), atol=1e-4)  # reset really forgot the cache


def test_onnx_int4_and_int8_variants_quantize_their_matmuls_and_run(onnx_files):
    from edgekd.llm.decode import greedy, matched_prefix, onnx_session, perplexity, torch_session

    model, folder, details = onnx_files
    assert details["int4"]["MatMulNBits"] >= 8  # 2 layers x (fused qkv, o, fused gate_up, down) (+ lm_head)
    # int8: 2 layers x (q,k,v,o,gate,up); each down_proj stays fp32 and is listed with its reason
    assert details["int8"]["MatMulInteger"] == 6
    kept = next(names for reason, names in details["int8"]["left_float"].items() if reason.startswith("gated-MLP"))
    assert len(kept) == 2 and all("down_proj" in name for name in kept)
    fp32_size = (folder / "tiny.fp32.onnx").stat().st_size
    assert (folder / "tiny.int4.onnx").stat().st_size < fp32_size
    ref = torch_session(model, 64)
    tokens = list(np.random.default_rng(0).integers(0, 256, 60))
    ref_ppl = perplexity(ref, tokens, window=31)
    assert ref_ppl["tokens_scored"] == 58 and 50 < ref_ppl["perplexity"] < 1000  # random model: ~vocab size
    for name in ("tiny.int4.onnx", "tiny.int8.onnx"):
        session = onnx_session(folder / name, 64)
        ppl = perplexity(session, tokens, window=31)
        assert abs(ppl["perplexity"] / ref_ppl["perplexity"] - 1) < 0.2
        out = greedy(session, [5, 6, 7], 8)
        assert len(out) == 8 and matched_prefix(greedy(ref, [5, 6, 7], 8), out) >= 0


def test_greedy_stops_at_cache_end_and_matched_prefix():
    from edgekd.llm.decode import greedy, matched_prefix, torch_session

    session = torch_session(tiny_qwen2(), max_len=8)
    out = greedy(session, [1, 2, 3, 4, 5], 10)
    assert session.pos <= 8 and len(out) == 4
    assert matched_prefix([1, 2, 3], [1, 2, 4]) == 2 and matched_prefix([1], []) == 0
    with pytest.raises(ValueError, match="exceed the cache length"):
        session.feed(list(range(9)))


def test_perplexity_per_token_agrees_with_the_total_and_refuses_last_logits_only():
    from edgekd.llm.decode import Session, perplexity, torch_session

    session = torch_session(tiny_qwen2(), max_len=32)
    tokens = [(7 * i) % 251 + 3 for i in range(40)]
    total = perplexity(session, tokens, 31)
    detail = perplexity(session, tokens, 31, per_token=True)
    assert detail["tokens_scored"] == len(detail["token_nll"]) == len(detail["token_top1"]) == 38
    assert np.exp(np.mean(detail["token_nll"])) == pytest.approx(total["perplexity"], rel=1e-9)
    session.reset()
    logits = session.feed(tokens[:31])
    assert detail["token_top1"][:30] == list(logits[:-1].argmax(-1) == np.array(tokens[1:31]))
    last_only = Session(lambda ids, pos: session.feed_fn(ids, pos)[-1:], session.reset_fn, 31, name="last-only")
    with pytest.raises(ValueError, match="last position only"):
        perplexity(last_only, tokens, 31)


def test_llm_config_forbids_unknown_keys_and_bad_values():
    from pydantic import ValidationError

    from edgekd.config.schema import LlmConfig

    assert LlmConfig().onnx_variants == ["fp32", "int4", "int8"]
    with pytest.raises(ValidationError):
        LlmConfig(group_sise=32)
    with pytest.raises(ValidationError):
        LlmConfig(group_size=48)
    with pytest.raises(ValidationError):
        LlmConfig(onnx_variants=["int3"])


def test_quantize_8da4w_replaces_linear_and_embedding_weights():
    from edgekd.llm.export import quantize_8da4w

    model = tiny_qwen2()
    q, details = quantize_8da4w(model, 32, "int8")
    assert details["linear_count"] == 15 and "int8" in details["embedding"]
    assert type(q.model.layers[0].self_attn.q_proj.weight).__name__ != "Parameter"
    assert type(q.model.embed_tokens.weight).__name__ != "Parameter"
    assert type(model.model.layers[0].self_attn.q_proj.weight).__name__ == "Parameter"  # the original is untouched
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        diff = (q(ids).logits - model(ids).logits).abs().max().item()
    assert 0 < diff < 1.0
    with pytest.raises(EdgekdError, match="group_size"):
        quantize_8da4w(model, 256)


def test_quantize_8da4w_drops_embedding_padding_idx_without_changing_outputs():
    """SmolLM2 has pad_token_id=2; padding_idx on aten.embedding blocks ExecuTorch's embedding_byte fusion."""
    from edgekd.llm.export import quantize_8da4w

    model = tiny_qwen2()
    model.model.embed_tokens.padding_idx = 2
    q, _ = quantize_8da4w(model, 32, "int8")
    assert q.model.embed_tokens.padding_idx is None and model.model.embed_tokens.padding_idx == 2
    ids = torch.tensor([[2, 5, 2, 7]])
    with torch.no_grad():
        ref = model(ids).logits
        assert (q(ids).logits - ref).abs().max().item() < 1.0


def test_merge_lora_errors_are_clear(tmp_path):
    from edgekd.llm.models import merge_lora

    with pytest.raises(EdgekdError) as info:
        merge_lora(tiny_qwen2(), tmp_path)
    assert "peft" in info.value.render() or "adapter_config.json" in info.value.render()


def test_convert_gguf_refuses_foreign_folder_and_missing_file(tmp_path):
    from edgekd.llm.models import convert_gguf

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not edgekd's")
    with pytest.raises(EdgekdError, match="not written by edgekd"):
        convert_gguf(tmp_path / "x.gguf", foreign)
    with pytest.raises(EdgekdError, match="GGUF file not found"):
        convert_gguf(tmp_path / "x.gguf", tmp_path / "new")
    assert (foreign / "notes.txt").read_text() == "not edgekd's"


def test_bench_process_measures_tokens_per_s_and_memory(onnx_files):
    from edgekd.llm.stages import bench_one

    _, folder, _ = onnx_files
    result = bench_one(folder / "tiny.int4.onnx", "onnxruntime", list(range(1, 17)), new_tokens=8, max_len=64,
                       threads=1, repeats=2)
    assert result["prompt_tokens"] == 16 and result["decode_tokens"] == 8
    assert result["prefill_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0
    assert result["load_s"] > 0 and result["peak_rss_mb"] >= result["baseline_rss_mb"] > 0
    assert result["peak_memory_mb"] >= 0


def test_size_ratio_falls_back_to_state_dict_and_report_section_shows_it(onnx_files, tmp_path):
    """No fp32 artifact of a format: the ratio is taken against the fp32 state dict and the report says so."""
    from edgekd.config.loading import load_recipe_and_profile
    from edgekd.context import Artifact, Context
    from edgekd.llm.stages import _size_ratios, state_dict_bytes
    from edgekd.llm.report import TITLE, llm_rows, publish

    model, folder, _ = onnx_files
    params = sum(p.numel() for p in model.parameters())  # parameters() yields the tied embedding once
    assert state_dict_bytes(model) == 4 * params  # lm_head tied to the embedding: stored once
    recipe_file = Path(__file__).resolve().parents[2] / "recipes/smollm2/8da4w.yaml"
    recipe, profile, rfile, pfile = load_recipe_and_profile(recipe_file, "snapdragon865", [])
    ctx = Context(recipe=recipe, profile=profile, recipe_path=rfile, profile_path=pfile, out_dir=tmp_path)
    for precision in ("fp32", "int4"):
        path = folder / f"tiny.{precision}.onnx"
        ctx.artifacts.append(Artifact(name=path.name, path=path, format="onnx", runtime="onnxruntime",
                                      precision=precision, bytes=path.stat().st_size, sha256="",
                                      is_reference=precision == "fp32"))
    int8 = folder / "tiny.int8.onnx"  # pretend it is a .pte-like format with no fp32 sibling
    ctx.artifacts.append(Artifact(name="tiny.int8.x", path=int8, format="x", runtime="onnxruntime",
                                  precision="int8", bytes=int8.stat().st_size, sha256="", is_reference=False))
    _size_ratios(ctx, model)
    fp32_onnx = ctx.artifacts[0].bytes
    assert ctx.artifacts[1].details["size_ratio_vs_fp32"] == pytest.approx(ctx.artifacts[1].bytes / fp32_onnx)
    assert ctx.artifacts[2].details["size_ratio_vs_fp32"] == pytest.approx(int8.stat().st_size
                                                                           / state_dict_bytes(model))
    assert "tiny.int8.x against the fp32 state dict" in ctx.metrics["llm"]["size_basis"]
    ctx.metrics["llm"].update({"corpus": "austen:emma", "perplexity_tokens": 64,
                               "fp32_pytorch": {"perplexity": 12.5, "window": 63}, "prompts": ["Emma Woodhouse"],
                               "fp32_continuations": [", handsome"]})
    ctx.artifacts[1].parity = {"perplexity": 13.0, "perplexity_increase": 0.04, "greedy_tokens_matched": [3],
                               "greedy_tokens_compared": [8], "continuations": ["a\nb`c"]}
    ctx.artifacts[1].bench = {"decode_tokens_per_s": 55.5, "prefill_tokens_per_s": 400.0}
    publish(ctx)
    section = ctx.report_sections[TITLE]
    rows = {r["artifact"]: r for r in llm_rows(ctx)}
    assert rows["tiny.int4.onnx"]["perplexity"] == "13.000" and rows["tiny.int4.onnx"]["decode tok/s"] == "55.5"
    assert rows["tiny.int4.onnx"]["greedy matched"] == "3 of 8"
    assert rows["fp32 PyTorch (reference)"]["perplexity"] == "12.500"
    assert "| tiny.int4.onnx | onnxruntime | int4 |" in section and "a\\nb'c" in section
    plot = ctx.plots["llm_tradeoff"]  # perplexity and decode tok/s against MB, one point per scored artifact
    assert plot == tmp_path / "plots" / "llm_tradeoff.png" and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
