"""bench: time every deliverable artifact on the profile's runner and judge it against the profile's budgets.

The measuring itself lives in edgekd.bench (runners: local, ssh, adb); this stage only chooses what to run.
"""

from __future__ import annotations

from edgekd.context import Context


def run(ctx: Context, cfg) -> Context:
    if ctx.model.task == "causal-lm":
        from edgekd.llm.pipeline import bench_llm

        ctx = bench_llm(ctx)
    else:
        from edgekd.bench.core import bench_artifacts

        ctx = bench_artifacts(ctx, cfg)
    return ctx
