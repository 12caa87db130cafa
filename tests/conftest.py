"""Shared test setup: offline hub, small thread counts (2-core CI), and helpers to write recipes."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def root() -> Path:
    return ROOT


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


DIGITS_RECIPE = """
name: digits_smoke
model:
  source: builtin:digits_cnn
  task: image-classification
data:
  source: builtin:digits
  calibration_samples: 32
  eval_samples: 48
stages:
  fuse: {}
  ptq: {}
  bench:
    enabled: false
budgets:
  accuracy_drop: 1.0
"""


def session_ops(path: Path, folder: Path) -> Counter:
    """Op types of an ONNX after onnxruntime's session-time optimizations (what a default CPU session runs), read
    from the optimized graph the session writes into `folder`."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(folder / f"session_{path.name}")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(folder / f"session_{path.name}"), load_external_data=False)
    return Counter(n.op_type for n in optimized.graph.node)
