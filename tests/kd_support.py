"""Shared pieces of the KD tests: real sklearn digits splits, a quickly trained CNN teacher, a Context to run stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.config.schema import Profile, Recipe
from edgekd.context import Context, Data, ModelBundle, Split
from edgekd.models.builtin import DigitsCNN


def digits_splits(n_eval: int = 300, n_cal: int = 32, seed: int = 0) -> Data:
    """sklearn's real 8x8 digits, shuffled once, split eval / calibration / train without overlap."""
    from sklearn.datasets import load_digits

    loaded = load_digits()
    order = np.random.default_rng(seed).permutation(len(loaded.target))
    images = torch.tensor(loaded.images[order], dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(loaded.target[order], dtype=torch.long)

    def split(lo, hi):
        return Split([(x.unsqueeze(0),) for x in images[lo:hi]], labels=labels[lo:hi])

    return Data(eval=split(0, n_eval), calibration=split(n_eval, n_eval + n_cal),
                train=split(n_eval + n_cal, len(labels)), num_classes=10, source="sklearn digits")


def bundle(module: torch.nn.Module, name: str) -> ModelBundle:
    return ModelBundle(name=name, task="image-classification", module=module.eval(),
                       example_inputs=(torch.zeros(1, 1, 8, 8),), input_names=["image"], output_names=["logits"],
                       meta={"num_classes": 10})


def trained_teacher(data: Data, width: int = 16, epochs: int = 8) -> DigitsCNN:
    from edgekd.train.teachers import train_classifier

    torch.manual_seed(0)
    teacher = DigitsCNN(width)
    train_classifier(teacher, data.train, epochs=epochs, lr=5e-3, seed=0)
    return teacher.eval()


def make_context(tmp: Path, stages: dict, student: torch.nn.Module, teacher: torch.nn.Module, data: Data,
                 backend: str = "executorch-xnnpack", resume: bool = False) -> Context:
    recipe = Recipe(name="kd_test", model={"source": "builtin:digits_cnn"},
                    teacher={"source": "builtin:digits_cnn"}, data={"source": "builtin:digits"},
                    stages={"bench": {"enabled": False}, **stages})
    profile = Profile(name="test", backend=backend)
    ctx = Context(recipe=recipe, profile=profile, recipe_path=tmp / "recipe.yaml", profile_path=tmp / "p.yaml",
                  out_dir=tmp / "out", work_dir=tmp / "work", resume=resume)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    ctx.model, ctx.teacher, ctx.data = bundle(student, "student"), bundle(teacher, "teacher"), data
    return ctx


def seven_class_teacher() -> ModelBundle:
    """A `py:` teacher whose label space (7 classes) cannot teach a 10-class digits student."""
    return bundle(DigitsCNN(4, num_classes=7), "seven_class_teacher")
