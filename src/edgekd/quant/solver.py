"""Choose a precision per layer: an exact multiple-choice knapsack over artifact bytes, solved by dynamic programming.

Each layer is a group; each allowed precision is an item with a cost (the layer's weight bytes at that precision,
rounded UP to `granularity` bytes so a plan the solver accepts cannot overflow the budget by rounding) and a value
(the error that layer alone adds when held at that precision, from the sensitivity stage). Exactly one item per
group is taken; the sum of costs plus the model's fixed overhead (bytes that are not layer weights: norms, the
container, the graph) must fit the budget, and the summed error is minimised. With B buckets, L layers and P
precisions this is O(L * P * B); EfficientNet-Lite0 at 4 KiB buckets is 50 x 3 x ~4,600 cells, milliseconds.

Errors are summed because they are noise-to-signal power ratios (10^(-SQNR/10)) of independent perturbations,
which add to first order; a fixed threshold on sensitivity would ignore what each layer costs in bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgekd.errors import GateFailed

MB = 1_000_000


@dataclass
class LayerOption:
    """One layer and, per precision it may take, the bytes it costs and the error it adds."""

    name: str
    bytes: dict[str, int]
    error: dict[str, float]


@dataclass
class Solution:
    choices: dict[str, str]
    layer_bytes: int
    overhead_bytes: int
    estimated_error: float
    budget_bytes: int
    granularity: int
    alternatives: dict[str, dict] = field(default_factory=dict)  # reference plans: all-int8, all-fp32: bytes, error

    @property
    def total_bytes(self) -> int:
        return self.layer_bytes + self.overhead_bytes


def solve(layers: list[LayerOption], budget_bytes: int, overhead_bytes: int, *, granularity: int = 4096,
          budget_key: str = "artifact_size_mb") -> Solution:
    """Minimise the summed error subject to overhead + sum(bytes) <= budget; GateFailed if nothing fits."""
    if granularity < 1:
        raise ValueError("granularity must be >= 1")
    capacity = (budget_bytes - overhead_bytes) // granularity
    smallest = overhead_bytes + sum(min(opt.bytes.values()) for opt in layers)
    if capacity < 0 or sum(min(_cost(b, granularity) for b in opt.bytes.values()) for opt in layers) > capacity:
        raise GateFailed(f"no precision plan meets {budget_key}={budget_bytes / MB:g}; the smallest is "
                         f"{smallest / MB:.3f} MB", key=f"budgets.{budget_key}",
                         hint="raise the budget, allow a smaller precision (int4) or shrink the model")
    inf = math.inf
    best = np.full(capacity + 1, inf)
    best[0] = 0.0  # best[c]: least error using exactly c buckets over the layers so far
    picks = []  # per layer, the precision index chosen to reach each bucket count
    for opt in layers:
        precisions = list(opt.bytes)
        nxt = np.full(capacity + 1, inf)
        pick = np.full(capacity + 1, -1, dtype=np.int16)
        for index, precision in enumerate(precisions):
            cost = _cost(opt.bytes[precision], granularity)
            if cost > capacity:
                continue
            candidate = np.full(capacity + 1, inf)
            candidate[cost:] = best[:capacity + 1 - cost] + float(opt.error[precision])
            better = candidate < nxt
            nxt[better] = candidate[better]
            pick[better] = index
        best = nxt
        picks.append((precisions, pick))
    end = int(np.argmin(best))
    if not math.isfinite(best[end]):  # pragma: no cover - excluded by the smallest-plan check above
        raise GateFailed(f"no precision plan meets {budget_key}={budget_bytes / MB:g}", key=f"budgets.{budget_key}")
    choices: dict[str, str] = {}
    cursor = end
    for opt, (precisions, pick) in zip(reversed(layers), reversed(picks)):
        precision = precisions[int(pick[cursor])]
        choices[opt.name] = precision
        cursor -= _cost(opt.bytes[precision], granularity)
    choices = {opt.name: choices[opt.name] for opt in layers}
    layer_bytes = sum(opt.bytes[choices[opt.name]] for opt in layers)
    error = sum(float(opt.error[choices[opt.name]]) for opt in layers)
    alternatives = {}
    for precision in ("int8", "fp16", "fp32", "int4"):
        if all(precision in opt.bytes for opt in layers):
            alternatives[f"all-{precision}"] = {
                "bytes": overhead_bytes + sum(opt.bytes[precision] for opt in layers),
                "estimated_error": sum(float(opt.error[precision]) for opt in layers)}
    return Solution(choices=choices, layer_bytes=layer_bytes, overhead_bytes=overhead_bytes, estimated_error=error,
                    budget_bytes=budget_bytes, granularity=granularity, alternatives=alternatives)


def _cost(nbytes: int, granularity: int) -> int:
    return -(-int(nbytes) // granularity)


def brute_force(layers: list[LayerOption], budget_bytes: int, overhead_bytes: int) -> tuple[dict[str, str], float]:
    """Exhaustive search over every combination (tests only: exponential). Exact bytes, no bucketing."""
    import itertools

    best_err, best_choice = math.inf, None
    for combo in itertools.product(*[list(opt.bytes) for opt in layers]):
        size = overhead_bytes + sum(opt.bytes[p] for opt, p in zip(layers, combo))
        if size > budget_bytes:
            continue
        err = sum(opt.error[p] for opt, p in zip(layers, combo))
        if err < best_err:
            best_err, best_choice = err, {opt.name: p for opt, p in zip(layers, combo)}
    return best_choice, best_err
