"""manifest.json: the machine-readable record of a run (inputs, decisions, artifacts with sizes and hashes,
parity, latency, memory and every budget verdict). CI jobs and `edgekd bench` / `edgekd size check` read it."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path

from edgekd.config.loading import file_sha256
from edgekd.context import Context

MANIFEST_VERSION = 1


def artifact_record(artifact, root: Path) -> dict:
    record = asdict(artifact)
    record["path"] = str(Path(artifact.path).relative_to(root)) if Path(artifact.path).is_relative_to(root) else str(
        artifact.path)
    return record


def build_manifest(ctx: Context, root: Path) -> dict:
    import torch

    verdicts = all_verdicts(ctx)
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "recipe": {"name": ctx.recipe.name, "path": str(ctx.recipe_path), "sha256": file_sha256(ctx.recipe_path),
                   "resolved": ctx.recipe.model_dump(mode="json")},
        "profile": {"name": ctx.profile.name, "path": str(ctx.profile_path), "backend": ctx.profile.backend,
                    "resolved": ctx.profile.model_dump(mode="json")},
        "budgets": ctx.budgets.model_dump(mode="json"),
        "model": ctx.metrics.get("model", {}),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "torch": torch.__version__},
        "inputs": "inputs.npz",
        "artifacts": [artifact_record(a, root) for a in ctx.artifacts],
        "metrics": {k: v for k, v in ctx.metrics.items() if k != "model"},
        "decisions": [asdict(d) for d in ctx.decisions],
        "timings_s": ctx.timings,
        "plots": {k: str(Path(v).name) for k, v in ctx.plots.items()},
        "verdict": overall_verdict(verdicts),
    }


def all_verdicts(ctx: Context) -> list[dict]:
    rows = []
    for artifact in ctx.artifacts:
        for v in artifact.verdicts:
            rows.append({"artifact": artifact.name, **v})
    return rows


def overall_verdict(verdicts: list[dict]) -> str:
    if any(v["status"] == "fail" for v in verdicts):
        return "fail"
    return "pass" if verdicts else "no budgets checked"
