"""Temperature and learning-rate schedules, both functions of the global step so resume lands on the same values."""

from __future__ import annotations

import math


def temperature_at(step: int, total_steps: int, start: float, end: float | None, schedule: str) -> float:
    """Constant `start`, or linear from `start` (step 0) to `end` (last step)."""
    if schedule == "constant" or end is None or total_steps <= 1:
        return float(start)
    frac = min(max(step / (total_steps - 1), 0.0), 1.0)
    return float(start + (end - start) * frac)


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the base LR: linear warmup, then constant, cosine to 0 or linear to 0."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    frac = min(max((step - warmup_steps) / span, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0 - frac
