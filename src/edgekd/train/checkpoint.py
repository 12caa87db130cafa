"""Checkpoints for --resume: model, projections, optimizer, scheduler, step, epoch, RNG state; written atomically.

A run interrupted at any point leaves either the previous checkpoint or the new one (house rule 9). The training
config is fingerprinted: resuming with different hyper-parameters is refused instead of silently mixing two runs.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from edgekd.report.atomic import atomic_path

LAST = "last.pt"


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, state: dict) -> Path:
    target = Path(folder) / LAST
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def load(folder: Path) -> dict | None:
    path = Path(folder) / LAST
    if not path.exists():
        return None
    # Our own file (RNG states and history are Python objects), written by save() above.
    return torch.load(path, map_location="cpu", weights_only=False)
