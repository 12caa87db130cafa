"""The ordered stage list, the prerequisite check that runs before any stage, and per-stage timing.

Rule 1 of docs/architecture.md: one stage = one module with one public `run(ctx, cfg)`; their order lives in STAGES
below and
nowhere else. A stage is enabled by its recipe section; `requires` names what must be true before the first stage
starts, so a bad teacher path fails in a second rather than after an hour of training.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from edgekd.context import Context
from edgekd.errors import EdgekdError


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # edgekd.stages.<module>, imported lazily so `edgekd --help` stays fast
    enabled: Callable[[Context], bool]
    summary: str


def _section(name: str) -> Callable[[Context], bool]:
    def enabled(ctx: Context) -> bool:
        section = getattr(ctx.recipe.stages, name)
        if section is None:
            return False
        return bool(getattr(section, "enabled", True))
    return enabled


def _always(ctx: Context) -> bool:
    return True


STAGES: list[Stage] = [
    Stage("load", "load", _always, "load the student, the teacher and the real data"),
    Stage("distill", "distill", _section("distill"), "fp32 knowledge distillation from the teacher"),
    Stage("prune", "prune", _section("prune"), "structured channel pruning, then KD recovery from the unpruned"),
    Stage("fuse", "fuse", _section("fuse"), "fold norms into Conv/Linear, fuse activations, check numerically"),
    Stage("sensitivity", "sensitivity", _section("sensitivity"), "per-layer quantization error"),
    Stage("mixed_precision", "mixed_precision", _section("mixed_precision"), "precision per layer under budgets"),
    Stage("qat", "qat", _section("qat"), "quantization-aware training with the teacher's soft targets"),
    Stage("ptq", "ptq", _section("ptq"), "post-training quantization calibrated on real data"),
    Stage("export", "export", _always, "write the artifacts the profile's backend needs"),
    Stage("verify", "verify", _always, "run every artifact in its real runtime against PyTorch"),
    Stage("bench", "bench", _section("bench"), "latency, memory and size against the profile's budgets"),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def planned_stages(ctx: Context, skip: tuple[str, ...] = ()) -> list[Stage]:
    unknown = sorted(set(skip) - set(stage_names()))
    if unknown:
        raise EdgekdError(f"unknown stage(s) to skip: {', '.join(unknown)}", key="--skip",
                          hint=f"allowed: {', '.join(stage_names())}")
    return [s for s in STAGES if s.enabled(ctx) and s.name not in skip]


def check_prerequisites(ctx: Context, stages: list[Stage], configs: dict[str, Any] | None = None) -> None:
    """Ask every planned stage whose module defines `check(ctx, cfg)` to validate its inputs before anything runs."""
    configs = configs or {}
    problems: list[str] = []
    for stage in stages:
        module = importlib.import_module(f"edgekd.stages.{stage.module}")
        check = getattr(module, "check", None)
        if check is None:
            continue
        try:
            check(ctx, configs.get(stage.name, getattr(ctx.recipe.stages, stage.name, None)))
        except EdgekdError as exc:
            problems.append(f"[{stage.name}] {exc.render()}")
    if problems:
        raise EdgekdError("prerequisites not met:\n" + "\n".join(problems))


def run_pipeline(ctx: Context, skip: tuple[str, ...] = (), on_stage: Callable[[str, str], None] | None = None,
                 *, only: tuple[str, ...] | None = None, configs: dict[str, Any] | None = None) -> Context:
    """Run the planned stages in STAGES order.

    `only` restricts the run to those stages (still in STAGES order, still only when enabled) and `configs` gives a
    stage a config of its own, which also enables it: `edgekd sensitivity` runs load, fuse and sensitivity this way
    without a second copy of the order."""
    configs = configs or {}
    if only is not None:
        unknown = sorted(set(only) - set(stage_names()))
        if unknown:
            raise EdgekdError(f"unknown stage(s): {', '.join(unknown)}", hint=f"allowed: {', '.join(stage_names())}")
        stages = [s for s in STAGES if s.name in only and s.name not in skip and (s.name in configs or s.enabled(ctx))]
    else:
        stages = planned_stages(ctx, skip)
    check_prerequisites(ctx, stages, configs)
    for stage in stages:
        if on_stage:
            on_stage(stage.name, stage.summary)
        module = importlib.import_module(f"edgekd.stages.{stage.module}")
        started = time.perf_counter()
        ctx = module.run(ctx, configs.get(stage.name, getattr(ctx.recipe.stages, stage.name, None)))
        ctx.timings[stage.name] = time.perf_counter() - started
    if only is None:
        for stage in STAGES:
            if stage not in stages:
                reason = "skipped on the command line" if stage.name in skip else "not enabled in the recipe"
                ctx.decide("pipeline", stage.name, "not run", reason)
    return ctx
