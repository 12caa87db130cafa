"""Load weight files with errors that name the file: missing, truncated or not a state dict."""

from __future__ import annotations

from pathlib import Path

import torch

from edgekd.errors import EdgekdError


def load_state_dict(path: str | Path, key: str = "") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise EdgekdError("weights file not found", file=str(path), key=key)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many types for a corrupt file
        raise EdgekdError(f"corrupt or unreadable weights: {type(exc).__name__}: {str(exc)[:200]}", file=str(path),
                          key=key) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgekdError("not a state dict of tensors", file=str(path), key=key)
    return state
