"""The mixed-precision solver is an exact multiple-choice knapsack: it matches brute force and honours the budget."""

import random

import pytest

from edgekd.errors import GateFailed
from edgekd.quant.solver import LayerOption, brute_force, solve


def random_layers(rng, n):
    layers = []
    for i in range(n):
        fp32 = rng.randint(4, 400) * 1024
        layers.append(LayerOption(
            name=f"l{i}", bytes={"int8": fp32 // 4 + 512, "fp16": fp32 // 2, "fp32": fp32},
            error={"int8": rng.random() ** 3, "fp16": rng.random() * 1e-4, "fp32": 0.0}))
    return layers


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed):
    rng = random.Random(seed)
    layers = random_layers(rng, 7)
    small = sum(o.bytes["int8"] for o in layers)
    big = sum(o.bytes["fp32"] for o in layers)
    budget = 50_000 + small + int(rng.random() * (big - small))
    solution = solve(layers, budget, overhead_bytes=50_000, granularity=1)
    _, best = brute_force(layers, budget, 50_000)
    assert solution.total_bytes <= budget
    assert solution.estimated_error == pytest.approx(best, rel=1e-9, abs=1e-15)


def test_bucketing_never_overflows_and_is_close():
    rng = random.Random(99)
    layers = random_layers(rng, 8)
    budget = 30_000 + sum(o.bytes["int8"] for o in layers) + 300_000
    coarse = solve(layers, budget, 30_000, granularity=4096)
    exact = solve(layers, budget, 30_000, granularity=1)
    assert coarse.total_bytes <= budget
    assert coarse.estimated_error >= exact.estimated_error - 1e-12


def test_not_a_threshold_prefers_cheap_sensitive_layers():
    # A huge, fairly sensitive layer and two small, slightly less sensitive ones: a threshold on sensitivity would
    # spend the budget on the big one; the knapsack keeps the two small ones, which remove more error.
    layers = [LayerOption("big", {"int8": 100_000, "fp32": 400_000}, {"int8": 0.5, "fp32": 0.0}),
              LayerOption("a", {"int8": 10_000, "fp32": 40_000}, {"int8": 0.4, "fp32": 0.0}),
              LayerOption("b", {"int8": 10_000, "fp32": 40_000}, {"int8": 0.4, "fp32": 0.0})]
    sol = solve(layers, 200_000, 0, granularity=1)
    assert sol.choices == {"big": "int8", "a": "fp32", "b": "fp32"}
    assert sol.alternatives["all-int8"]["estimated_error"] == pytest.approx(1.3)


def test_generous_budget_gives_all_fp32_and_tight_gives_all_int8():
    layers = random_layers(random.Random(3), 5)
    assert set(solve(layers, 10**9, 0).choices.values()) == {"fp32"}
    tight = sum(-(-o.bytes["int8"] // 4096) * 4096 for o in layers)
    assert set(solve(layers, tight, 0).choices.values()) == {"int8"}


def test_infeasible_budget_is_gate_failure_with_smallest_size():
    layers = random_layers(random.Random(5), 4)
    with pytest.raises(GateFailed) as err:
        solve(layers, 1000, 500)
    assert err.value.code == 1
    assert "no precision plan meets artifact_size_mb=0.001; the smallest is" in err.value.message
