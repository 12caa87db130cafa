"""`edgekd export --model PATH` without a recipe: the recipe edgekd would write, from the model and data paths.

Defaults per task: image models are fused, int8-quantized and verified on the given images (or, without `--data`,
on crops of the sample photos that ship with scikit-image); text models on the given lines (or the built-in real
sentences). The recipe is written to out/<name>/recipe.yaml so the next run can start from it and change it.
Paths are written absolute: the recipe is read from the output folder, not from where the command ran.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekd.errors import EdgekdError

TEXT_TASKS = ("sentence-embedding", "text-classification")


def model_source(model: str) -> tuple[str, str, str | None]:
    """`--model` -> (recipe source, name, detected task or None)."""
    target, sep, fn = model.rpartition(":")
    if sep and target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise EdgekdError("Python file not found", file=target, key="--model")
        return f"py:{path}:{fn}", path.stem, None
    path = Path(model).expanduser().resolve()
    if not path.exists():
        raise EdgekdError("model not found", file=model, key="--model",
                          hint="allowed: a Hugging Face folder, FILE.py:factory, FILE.pt2")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EdgekdError("a folder must be a Hugging Face model folder (no config.json)", file=model,
                              key="--model")
        task = "sentence-embedding" if (path / "modules.json").is_file() else None
        return f"hf:{path}", path.name, task
    if path.suffix == ".pt2":
        return f"pt2:{path}", path.stem, None
    if path.suffix == ".py":
        raise EdgekdError("name the factory function after the file", file=model, key="--model",
                          hint=f"e.g. {model}:build")
    raise EdgekdError("unsupported model file", file=model, key="--model",
                      hint="allowed: a Hugging Face folder, FILE.py:factory, FILE.pt2 (torch.export.save); wrap "
                           "TorchScript or ONNX-converted models in a FILE.py factory")


def data_source(data: str | None, task: str) -> str:
    """`--data` -> the data source: a folder of images, a .npy/.npz, or a text file; None: the task's default."""
    if data is None:
        return "builtin:sentences" if task in TEXT_TASKS else "builtin:photo_crops"
    path = Path(data).expanduser().resolve()
    if path.is_dir():
        return f"images:{path}"
    if path.suffix in (".npy", ".npz"):
        return f"arrays:{path}"
    if path.suffix == ".txt":
        return f"lines:{path}"
    raise EdgekdError("unsupported data path" if path.exists() else "data path not found", file=data, key="--data",
                      hint="allowed: a folder of images, FILE.npy, FILE.npz, FILE.txt (one sentence per line)")


def recipe_for_model(model: str, data: str | None, task: str | None) -> dict:
    source, stem, detected = model_source(model)
    if source.startswith("hf:") and task is None and detected is None:
        task = "text-classification"
    task = task or detected or "image-classification"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip(".") or "model"
    recipe = {
        "name": f"{name}_int8",
        "description": f"edgekd export --model {model}: BN folded, int8 PTQ, verified against fp32",
        "model": {"source": source, "task": task},
        "data": {"source": data_source(data, task), "calibration_samples": 32, "eval_samples": 32},
        "stages": {"fuse": {}, "ptq": {"scheme": "int8"}, "verify": {}},
    }
    return recipe


def export_model(model: str, data: str | None, task: str | None, profile: str, out_root: Path, **options) -> int:
    """Write the recipe for `--model`, run it like any recipe, and keep it as out/<name>/recipe.yaml.

    The recipe is staged as a hidden file beside the output (export_run reads a recipe file and records its hash) and
    moved into the output folder once that exists, where the manifest then names it; a run that fails before that
    removes it."""
    import os

    import click
    import yaml

    from edgekd.report.atomic import write_text
    from edgekd.run import check_out_folder, export_run

    recipe = recipe_for_model(model, data, task)
    out_root = Path(out_root)
    check_out_folder(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    staged = out_root / f".{recipe['name']}.recipe-{os.getpid()}.yaml"
    text = f"# written by: edgekd export --model {model}" + (f" --data {data}" if data else "") + "\n"
    write_text(staged, text + yaml.safe_dump(recipe, sort_keys=False))
    try:
        code = export_run(staged, profile, out_root, **options)
        final = out_root / recipe["name"] / "recipe.yaml"
        if final.parent.is_dir():
            os.replace(staged, final)
            _record_recipe_path(final)
            click.echo(f"recipe: {final} (rerun or edit it: edgekd export --recipe {final} --profile {profile})")
        return code
    finally:
        staged.unlink(missing_ok=True)


def _record_recipe_path(recipe_file: Path) -> None:
    """The manifest names the recipe where it now lives (same bytes, so its sha256 stays right)."""
    import json

    from edgekd.report.atomic import write_json

    manifest_file = recipe_file.parent / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    if isinstance(manifest.get("recipe"), dict):
        manifest["recipe"]["path"] = str(recipe_file)
        write_json(manifest_file, manifest)
