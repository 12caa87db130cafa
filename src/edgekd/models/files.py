"""A user's own model: a Python factory (a module or a file imported by path) or a saved torch.export program.

Relative paths resolve against the recipe's folder, and that folder is on the import path while a `py:module`
source is imported, so a factory kept next to its recipe works without PYTHONPATH. The bundle is named after the
file (its stem) or the module, never the factory function: `build` or `make_model` would name every artifact alike.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch

from edgekd.config.schema import ModelSource
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError


def resolve(path: str, base_dir: Path | None) -> Path:
    """A recipe path: absolute as given, else relative to the recipe's folder (the working folder without one)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or base_dir is None else Path(base_dir) / candidate


def import_factory(ref: str, base_dir: Path | None, key: str):
    """`FILE.py:function` or `package.module:function` -> (the function, the name for the bundle)."""
    target, _, fn_name = ref.rpartition(":")
    if not target or not fn_name:
        raise EdgekdError("python source must be py:module:function or py:FILE.py:function", key=key,
                          hint="e.g. py:models/tiny_cnn.py:build")
    if target.endswith(".py"):
        path = resolve(target, base_dir)
        if not path.is_file():
            raise EdgekdError("Python file not found", file=str(path), key=key)
        name = path.stem
        spec = importlib.util.spec_from_file_location(f"edgekd_user_model_{name}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file: any error it raises is reported as input
            raise EdgekdError(f"importing the file failed: {type(exc).__name__}: {str(exc)[:200]}", file=str(path),
                              key=key) from exc
    else:
        name = target.rsplit(".", 1)[-1]
        added = base_dir is not None and str(base_dir) not in sys.path
        if added:
            sys.path.insert(0, str(base_dir))
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise EdgekdError(f"cannot import {target}: {exc}", key=key,
                              hint="a module next to the recipe is found; else set PYTHONPATH or use py:FILE.py:fn")
        finally:
            if added:
                sys.path.remove(str(base_dir))
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise EdgekdError(f"{target} has no function {fn_name!r}", key=key, hint=f"callables: {', '.join(public[:12])}")
    return fn, name


def bundle_from_result(result, name: str, source: ModelSource, key: str) -> ModelBundle:
    """A factory's return value as a ModelBundle: a bundle, `(module, example_inputs)`, or a module + input_shape."""
    if isinstance(result, ModelBundle):
        return result
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        module, example = result
        example = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    elif isinstance(result, torch.nn.Module):
        module, example = result, _example_from_shape(source, key, "the factory returned only an nn.Module")
    else:
        raise EdgekdError(f"{source.source} returned {type(result).__name__}; expected an nn.Module, "
                          "(nn.Module, example_inputs) or a ModelBundle", key=key)
    if not example or not all(isinstance(t, torch.Tensor) for t in example):
        raise EdgekdError("example inputs must be tensors", key=key)
    return _bundle(name, module, example, source)


def load_pt2(ref: str, source: ModelSource, base_dir: Path | None, key: str) -> ModelBundle:
    """A `torch.export.save`d program: its example inputs were saved with it (or come from input_shape)."""
    path = resolve(ref, base_dir)
    if not path.is_file():
        raise EdgekdError("torch.export program not found", file=str(path), key=key)
    if path.suffix != ".pt2":
        raise EdgekdError("only torch.export programs (.pt2) load directly", file=str(path), key=key,
                          hint="for TorchScript or a pickled module, wrap it in a factory: py:FILE.py:function")
    try:
        program = torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: reported as input
        raise EdgekdError(f"cannot load the program: {type(exc).__name__}: {str(exc)[:200]}", file=str(path),
                          key=key) from exc
    args, kwargs = program.example_inputs or ((), {})
    if source.input_shape is not None or not args:
        args = _example_from_shape(source, key, "the program was saved without example inputs")
    if kwargs:
        raise EdgekdError("programs with keyword inputs are not supported; export with positional inputs",
                          file=str(path), key=key)
    unlifted = program.module()
    # ExportedProgram.module() refuses train()/eval(), which every stage calls: the same graph and weights in a
    # plain GraphModule behave like any module (and export again as they are).
    module = torch.fx.GraphModule(unlifted, unlifted.graph)
    return _bundle(path.stem, module, tuple(args), source, dynamic_batch=False)


def _example_from_shape(source: ModelSource, key: str, why: str) -> tuple[torch.Tensor, ...]:
    if source.input_shape is None:
        raise EdgekdError(f"{why}: the input shape is unknown", key=key.rsplit(".", 1)[0] + ".input_shape",
                          hint="set model.input_shape, e.g. [1, 3, 224, 224], or return (module, example_inputs)")
    return (torch.zeros(*source.input_shape),)


def _bundle(name: str, module: torch.nn.Module, example: tuple, source: ModelSource,
            dynamic_batch: bool = True) -> ModelBundle:
    """Batch is dynamic for a Python module (as for the built-ins); a saved program keeps the shapes it was
    exported with, since its graph may have them baked in."""
    task = source.task or "image-classification"
    meta = {"source": source.source}
    if task == "image-classification" and example[0].dim() == 4:
        meta["image_size"] = int(example[0].shape[-1])
    names = ["image"] if len(example) == 1 and example[0].dim() == 4 else [f"input_{i}" for i in range(len(example))]
    axes = {n: {0: "batch"} for n in [*names, "output"]} if dynamic_batch else {}
    return ModelBundle(name=name, task=task, module=module, example_inputs=example, input_names=names,
                       dynamic_axes=axes, meta=meta)
