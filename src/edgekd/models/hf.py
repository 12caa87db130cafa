"""Local Hugging Face folders (no hub): sentence-transformers folders, BERT-style encoders, sequence classifiers.

Causal LMs are handled by edgekd.llm (KV-cache export differs); this module only recognises them and hands over.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.config.schema import DataConfig, ModelSource
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError
from edgekd.models.remote_code import refuse_remote_code

from .builtin import text_bundle


def load_hf_folder(folder: Path, data_cfg: DataConfig, source: ModelSource, key: str) -> ModelBundle:
    from edgekd.inputs import read_json

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise EdgekdError("not a Hugging Face model folder (no config.json)", file=str(folder), key=key)
    config = read_json(config_file, key=key, what="Hugging Face config.json")
    trust = refuse_remote_code(folder, source.trust_remote_code, key)
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        raise EdgekdError("'architectures' must be a list of class names", file=str(config_file), key=key)
    if any(str(a).endswith("ForCausalLM") for a in architectures) or source.task == "causal-lm":
        from edgekd.llm.models import load_causal_lm_bundle  # the LLM area builds causal-LM bundles

        return load_causal_lm_bundle(folder, data_cfg, source)
    from transformers import AutoModel, AutoTokenizer

    try:
        encoder = AutoModel.from_pretrained(folder, attn_implementation="eager", trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgekdError(f"cannot load the model folder: {type(exc).__name__}: {str(exc)[:300]}", file=str(folder),
                          key=key) from exc
    task = source.task or ("sentence-embedding" if (folder / "modules.json").is_file() else "text-classification")
    return text_bundle(folder.name, encoder, tokenizer, data_cfg, task, source.num_labels, str(folder))


