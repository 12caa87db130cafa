"""Teachers that are trained here from real data, for recipes whose dataset has no pretrained teacher on disk.

`cnn_teacher` trains a wide SmallCNN, `minilm_teacher` fine-tunes the real all-MiniLM-L6-v2 with a classification
head, each on exactly the train split the recipe's data section produces (pass the same data block, e.g. with a
YAML anchor), so the teacher never sees the calibration or evaluation samples. The weights are cached under
$EDGEKD_CACHE (default ~/.cache/edgekd) keyed by every setting that affects them.
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


def train_classifier(module: torch.nn.Module, split, epochs: int, lr: float, seed: int, batch_size: int = 64,
                     what: str = "teacher") -> None:
    """Plain supervised training (CE on labels), used only to make a teacher; samples may have several inputs
    (input_ids, attention_mask). A text teacher takes minutes on a small CPU, so each epoch shows a progress bar,
    or a line with its loss and seconds where another live display owns the terminal."""
    import sys
    import time

    from edgekd.train.loop import EpochBar

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(split) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    # its own step in the log: minutes inside "load" that would otherwise look like a hang
    print(f"training the {what}: {epochs} epochs of {steps_per_epoch} steps (cached for later runs)",
          file=sys.stderr, flush=True)
    bar = EpochBar(f"training the {what}", epochs, steps_per_epoch, enabled=True)
    module.train()
    try:
        for epoch in range(epochs):
            started, total = time.perf_counter(), 0.0
            bar.start_epoch(epoch, 0)
            order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                inputs = tuple(torch.cat(parts) for parts in zip(*(split.inputs[i] for i in idx)))
                loss = F.cross_entropy(module(*inputs), split.labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item()
                bar.advance(loss.item())
            if bar.progress is None:  # another live display (the CLI's) owns the terminal: one line per epoch
                print(f"{what} epoch {epoch + 1}/{epochs}: loss {total / steps_per_epoch:.4f}, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        bar.close()
    module.eval()


def _cached_weights(bundle: ModelBundle, stem: str, settings: dict, train) -> Path:
    """Load the bundle's weights from the cache entry keyed by `settings`, or `train()` them and cache them
    (written under a temporary name, renamed when complete)."""
    from edgekd.report.atomic import atomic_path

    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "teachers" / f"{stem}_{key}.pt"
    if path.is_file():
        bundle.module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        train()
        with atomic_path(path) as tmp:
            torch.save(bundle.module.state_dict(), tmp)
    bundle.module.eval()
    return path


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

    if model not in ("digits_cnn", "fashion_cnn"):
        raise EdgekdError(f"no trainable teacher for {model!r}", key="teacher.kwargs.model",
                          hint="allowed: digits_cnn, fashion_cnn")
    data_cfg = DataConfig(**(data or {"source": "builtin:digits"}))
    bundle = BUILTINS[model](data_cfg, width=width, seed=seed)
    settings = {"data": data_cfg.model_dump(), "model": model, "width": width, "epochs": epochs, "lr": lr,
                "seed": seed, "batch_size": batch_size, "v": 1}
    if model == "digits_cnn" and batch_size == 64:  # keys of teachers cached before `model` existed stay valid
        settings = {k: v for k, v in settings.items() if k not in ("model", "batch_size")}
    path = _cached_weights(bundle, f"{model}_w{width}", settings, lambda: train_classifier(
        bundle.module, load_data(data_cfg, bundle, key="teacher.kwargs.data.source").train, epochs, lr, seed,
        batch_size))
    bundle.name = f"{model.removesuffix('_cnn')}_teacher_w{width}"
    bundle.meta["source"] = f"SmallCNN {model}(width={width}) trained on the recipe's train split ({path.name})"
    return bundle


def digits_teacher(data: dict | None = None, width: int = 32, epochs: int = 30, lr: float = 3e-3,
                   seed: int = 0) -> ModelBundle:
    """The digits recipe's teacher (kept under this name: recipes and caches refer to it)."""
    return cnn_teacher(data, "digits_cnn", width, epochs, lr, seed)


def minilm_teacher(data: dict, num_labels: int = 2, epochs: int = 3, lr: float = 1e-4, seed: int = 0,
                   batch_size: int = 32) -> ModelBundle:
    """The real all-MiniLM-L6-v2 (6 layers) with a linear head, fine-tuned with CE on the recipe's train split.

    all-MiniLM-L6-v2 ships as a sentence embedder without a classifier, so a text-classification teacher has to be
    made: this is the step a user does once before distilling into a shallower student. Pass the recipe's own data
    block (a YAML anchor), so the teacher never sees the calibration or evaluation snippets. Cached by every setting.
    """
    from edgekd.config.schema import DataConfig
    from edgekd.data import load_data
    from edgekd.models.builtin import minilm_l6

    data_cfg = DataConfig(**data)
    torch.manual_seed(seed)  # the head's initialisation
    bundle = minilm_l6(data_cfg, task="text-classification", num_labels=num_labels)
    settings = {"data": data_cfg.model_dump(), "model": "minilm_l6", "num_labels": num_labels, "epochs": epochs,
                "lr": lr, "seed": seed, "batch_size": batch_size, "v": 1}
    path = _cached_weights(bundle, "minilm_l6_cls", settings, lambda: train_classifier(
        bundle.module, load_data(data_cfg, bundle, key="teacher.kwargs.data.source").train, epochs, lr, seed,
        batch_size, what="MiniLM-L6 teacher"))
    bundle.name = "minilm_l6_teacher"
    bundle.meta["source"] = f"all-MiniLM-L6-v2 + linear head fine-tuned on the recipe's train split ({path.name})"
    return bundle
