"""Local Hugging Face folders (no hub): sentence-transformers folders, BERT-style encoders, sequence classifiers.

Causal LMs are handled by edgekd.llm (KV-cache export differs); this module only recognises them and hands over.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.config.schema import DataConfig, ModelSource
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError

from .builtin import text_bundle


def load_hf_folder(folder: Path, data_cfg: DataConfig, source: ModelSource, key: str) -> ModelBundle:
    from edgekd.config.loading import read_json

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise EdgekdError("not a Hugging Face model folder (no config.json)", file=str(folder), key=key)
    config = read_json(config_file, key=key, what="Hugging Face config.json")
    trust = refuse_remote_code(folder, source.trust_remote_code, key)
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        raise EdgekdError("'architectures' must be a list of class names", file=str(config_file), key=key)
    if any(str(a).endswith("ForCausalLM") for a in architectures) or source.task == "causal-lm":
        from edgekd.llm import load_causal_lm_bundle  # provided by the LLM area

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


def refuse_remote_code(folder: Path, trusted: bool, key: str = "model.source") -> bool:
    """The trust_remote_code value to pass to transformers, after refusing a folder that ships Python code.

    transformers asks `[y/N]` on stdin when trust_remote_code is not given and a config has an `auto_map`, so
    `yes | edgekd ...` would run the folder's code: edgekd always passes an explicit value, False unless the recipe
    says `trust_remote_code: true`, and names the files instead of letting transformers ask."""
    import json

    if trusted:
        return True
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = Path(folder) / name
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (ValueError, OSError):
            continue  # the loader reports an unreadable config itself
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if auto_map:
            refs = sorted({str(v) for v in (auto_map.values() if isinstance(auto_map, dict) else [auto_map])})
            raise EdgekdError(f"{name} maps classes to Python code in the folder ({', '.join(refs)[:200]}); "
                              "edgekd does not run a model folder's code", file=str(folder), key=key,
                              hint=f"inspect the code, then set {key.rsplit('.', 1)[0]}.trust_remote_code: true "
                                   "to allow it")
    return False
