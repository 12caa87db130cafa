"""Teachers that are trained here from real data, for recipes whose dataset has no pretrained teacher on disk.

`cnn_teacher` trains a wide SmallCNN on exactly the train split the recipe's data section produces (pass the
same data block, e.g. with a YAML anchor), so the teacher never sees the calibration or evaluation samples.
The weights are cached under $EDGEKD_CACHE (default ~/.cache/edgekd) keyed by every setting that affects them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from edgekd.context import ModelBundle


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


def train_classifier(module: torch.nn.Module, split, epochs: int, lr: float, seed: int, batch_size: int = 64) -> None:
    """Plain supervised training (CE on labels), used only to make a teacher."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(split) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x = torch.cat([split.inputs[i][0] for i in idx])
            loss = F.cross_entropy(module(x), split.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    module.eval()


def cnn_teacher(data: dict | None = None, model: str = "digits_cnn", width: int = 32, epochs: int = 30,
                lr: float = 3e-3, seed: int = 0, batch_size: int = 64) -> ModelBundle:
    """A wide built-in SmallCNN (`model`: digits_cnn or fashion_cnn) trained with CE on the recipe's train split.

    Pass the recipe's own data block (a YAML anchor) so the teacher sees exactly the student's train split and never
    the calibration or evaluation images. Cached by every setting that changes the weights.
    """
    from edgekd.config.schema import DataConfig
    from edgekd.data import load_data
    from edgekd.errors import EdgekdError
    from edgekd.models.builtin import BUILTINS
    from edgekd.report.atomic import atomic_path

    if model not in ("digits_cnn", "fashion_cnn"):
        raise EdgekdError(f"no trainable teacher for {model!r}", key="teacher.kwargs.model",
                          hint="allowed: digits_cnn, fashion_cnn")
    data_cfg = DataConfig(**(data or {"source": "builtin:digits"}))
    bundle = BUILTINS[model](data_cfg, width=width, seed=seed)
    settings = {"data": data_cfg.model_dump(), "model": model, "width": width, "epochs": epochs, "lr": lr,
                "seed": seed, "batch_size": batch_size, "v": 1}
    if model == "digits_cnn" and batch_size == 64:  # keys of teachers cached before `model` existed stay valid
        settings = {k: v for k, v in settings.items() if k not in ("model", "batch_size")}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "teachers" / f"{model}_w{width}_{key}.pt"
    if path.is_file():
        bundle.module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        split = load_data(data_cfg, bundle, key="teacher.kwargs.data.source").train
        train_classifier(bundle.module, split, epochs, lr, seed, batch_size)
        with atomic_path(path) as tmp:
            torch.save(bundle.module.state_dict(), tmp)
    bundle.name = f"{model.removesuffix('_cnn')}_teacher_w{width}"
    bundle.meta["source"] = f"SmallCNN {model}(width={width}) trained on the recipe's train split ({path.name})"
    bundle.module.eval()
    return bundle


def digits_teacher(data: dict | None = None, width: int = 32, epochs: int = 30, lr: float = 3e-3,
                   seed: int = 0) -> ModelBundle:
    """The digits recipe's teacher (kept under this name: recipes and caches refer to it)."""
    return cnn_teacher(data, "digits_cnn", width, epochs, lr, seed)
