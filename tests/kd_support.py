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


def export_command(recipe: Path, out: Path, *extra: str) -> list[str]:
    """`edgekd export --profile snapdragon865` of a recipe, bench skipped. The installed entry point, run with this
    interpreter (the same entry point a user runs)."""
    import sys

    return [sys.executable, "-c", "from edgekd.cli import main; main(prog_name='edgekd')", "export", "--profile",
            "snapdragon865", "--recipe", str(recipe), "--out", str(out), "--skip", "bench", *extra]


def export_env(tmp: Path) -> dict:
    """A fresh cache under `tmp`, so the teacher is trained as a user's first run trains it. One intra-op thread: on
    a shared 2-core machine OpenMP spin-waiting makes 2 threads many times slower."""
    import os

    return {**os.environ, "EDGEKD_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def export_recipe(tmp: Path, recipe: Path, name: str, timeout: int = 1200, *extra: str,
                  expect_exit: int = 0) -> tuple[Path, dict]:
    """Run export_command to completion and return (out folder, manifest)."""
    import json
    import subprocess

    from .conftest import ROOT

    done = subprocess.run(export_command(recipe, tmp / "out", *extra), env=export_env(tmp), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == expect_exit, (done.stdout + done.stderr)[-3000:]
    folder = tmp / "out" / name
    return folder, json.loads((folder / "manifest.json").read_text())


def assert_qat_kd_acceptance(manifest: dict, samples: int, fp32_floor: float, margin: float = 0.005,
                             runtime_gap: float = 0.002, runtime_agreement: float = 0.99) -> dict:
    """The QAT+KD acceptance, each number measured in the artifact's own runtime and judged with paired statistics
    on the same samples (edgekd/stats.py), so kernel rounding on another CPU cannot flip it: QAT+KD is not
    significantly more than `margin` below the fp32 student and not significantly worse than plain PTQ of it
    (McNemar, p < 0.01; a tie is a tie), in .pte and ONNX alike; both artifacts within `runtime_gap` of the PyTorch
    converted model's accuracy and agreeing with it on `runtime_agreement` of the samples (static Q/DQ: the same
    arithmetic; dynamic int8 quantizes activations per row in XNNPACK and per tensor in PyTorch and onnxruntime, so
    a text model passes looser values, see tests/integration/test_kd_text.py). Returns {(format, precision): accuracy}.
    """
    import json

    import pytest

    verify = manifest["metrics"]["verify"]
    assert verify["samples"] == samples
    arts = {(a["format"], a["precision"]): a for a in manifest["artifacts"]}
    acc = {key: a["parity"]["accuracy"] for key, a in arts.items()}
    fp32 = verify["fp32_pytorch_accuracy"]
    paired = {fmt: arts[(fmt, "int8")]["parity"] for fmt in ("pte", "onnx")}
    print("accuracy:", json.dumps({f"{f}/{p}": v for (f, p), v in acc.items()}), "fp32 pytorch", fp32)
    print("paired:", json.dumps({fmt: {k: p[k] for k in ("paired_vs_fp32", "paired_vs_ptq")}
                                 for fmt, p in paired.items()}))
    assert fp32 >= fp32_floor  # a real student, not a degenerate one
    for fmt in ("pte", "onnx"):
        assert acc[(fmt, "fp32")] == pytest.approx(fp32, abs=1e-4), fmt
    for fmt, parity in paired.items():
        vs_fp32, vs_ptq = parity["paired_vs_fp32"], parity["paired_vs_ptq"]
        assert vs_fp32["samples"] == samples and vs_ptq["samples"] == samples
        assert vs_fp32["basis"] == "accuracy on labels"
        # not significantly more than `margin` below fp32 (the drop's one-sided 99% bound) ...
        assert not vs_fp32["exceeds"], (fmt, vs_fp32)
        assert vs_fp32["drop_ci_low"] <= margin, (fmt, vs_fp32)
        # ... and not significantly worse than PTQ of the same student
        assert vs_ptq["verdict"] in ("better", "tie"), (fmt, vs_ptq)
    converted = verify["pytorch_quantized_vs_fp32"]["accuracy"]
    for a in manifest["artifacts"]:
        if a["precision"] == "int8":
            assert abs(a["parity"]["accuracy"] - converted) <= runtime_gap + 1e-9, a["name"]
            assert a["parity"]["vs_pytorch_quantized"]["top1_agreement"] >= runtime_agreement, a["name"]
    return acc


def assert_side_by_side_report(folder: Path, manifest: dict) -> str:
    """report.md shows fp32 / PTQ / QAT+KD per runtime, the teacher's accuracy, and both loss curves."""
    report = (folder / "report.md").read_text()
    section = report.split("## fp32 vs PTQ vs QAT+KD")[1].split("\n## ")[0]
    for label in ("fp32 student", "int8 PTQ", "int8 QAT+KD", "pte (executorch)", "onnx (onnxruntime)", "Teacher ("):
        assert label in section
    assert 0.5 < manifest["metrics"]["verify"]["teacher_pytorch_accuracy"] <= 1.0
    for plot in ("distill_loss.png", "qat_loss.png"):
        assert f"]({plot})" in report and (folder / plot).stat().st_size > 5000
    return report
