"""bench: time every deliverable artifact on the profile's runner and judge it against the profile's budgets.

The measuring itself lives in edgekd.bench (runners: local, ssh, adb); this stage only chooses what to run.
"""

from __future__ import annotations

from edgekd.context import Context


def run(ctx: Context, cfg) -> Context:
    """The task's bench (edgekd/tasks.py): edgekd.bench.core.bench_artifacts, or the causal LM's tokens/s."""
    return ctx.task_record.part("bench")(ctx, cfg)
