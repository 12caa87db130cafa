"""Refusing a model folder's own Python code unless the recipe trusts it: shared by every loader of local folders
(edgekd/models/hf.py, edgekd/llm/models.py, `edgekd llm` commands)."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError


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
