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


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], file: str, key: str = "") -> None:
    """module.load_state_dict(state), after naming the first missing, unexpected and mismatched keys with their
    shapes: a weights file for another architecture or width is a user error, not a RuntimeError traceback."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs the model's {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    if parts:
        raise EdgekdError(f"weights do not fit the model ({'; '.join(parts)})", file=file, key=key,
                          hint="the weights must come from the same architecture and model.kwargs (width, ...)")
    module.load_state_dict(state)
