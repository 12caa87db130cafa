"""Checkpoints for --resume: model, projections, optimizer, scheduler, step, epoch, RNG state; written atomically.

A run interrupted at any point leaves either the previous checkpoint or the new one (docs/architecture.md, rule 9).
The training
config is fingerprinted: resuming with different hyper-parameters is refused instead of silently mixing two runs.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from edgekd.report.atomic import atomic_path

LAST = "last.pt"


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict:
    """RNG states as tensors and plain Python values only, so load() can use torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, state: dict) -> Path:
    target = Path(folder) / LAST
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def load(folder: Path) -> dict | None:
    """The last checkpoint, loaded with weights_only=True: tensors and plain data only, never pickled code.

    A checkpoint is a file in the output folder that anyone with write access there can replace; a full unpickle
    would run whatever a planted `last.pt` carries (`__reduce__`) before any settings check could refuse it."""
    from edgekd.errors import EdgekdError

    path = Path(folder) / LAST
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError for code, RuntimeError/EOFError for a truncated file
        reason = (f"is not a readable checkpoint ({type(exc).__name__})" if not isinstance(exc, pickle.UnpicklingError)
                  else "holds Python objects other than tensors and plain data (refused, nothing in it was run)")
        raise EdgekdError(f"checkpoint {reason}", file=str(path), key="--resume",
                          hint="delete it, or rerun without --resume to train from the start") from exc
    if not isinstance(state, dict):
        raise EdgekdError("not an edgekd training checkpoint", file=str(path), key="--resume",
                          hint="delete it, or rerun without --resume to train from the start")
    return state
