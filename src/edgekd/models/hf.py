"""Local Hugging Face folders (no hub): sentence-transformers folders, BERT-style encoders, sequence classifiers.

Causal LMs are handled by edgekd.llm (KV-cache export differs); this module only recognises them and hands over.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.config.schema import DataConfig, ModelSource
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError

from .builtin import text_bundle


def load_hf_folder(folder: Path, data_cfg: DataConfig, source: ModelSource, key: str) -> ModelBundle:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise EdgekdError("not a Hugging Face model folder (no config.json)", file=str(folder), key=key)
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise EdgekdError(f"config.json is not valid JSON: {exc}", file=str(config_file), key=key) from exc
    architectures = config.get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in architectures) or source.task == "causal-lm":
        from edgekd.llm import load_causal_lm_bundle  # provided by the LLM area

        return load_causal_lm_bundle(folder, data_cfg, source)
    from transformers import AutoModel, AutoTokenizer

    try:
        encoder = AutoModel.from_pretrained(folder, attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot load the model folder: {str(exc)[:300]}", file=str(folder), key=key) from exc
    task = source.task or ("sentence-embedding" if (folder / "modules.json").is_file() else "text-classification")
    return text_bundle(folder.name, encoder, tokenizer, data_cfg, task, source.num_labels, str(folder))
