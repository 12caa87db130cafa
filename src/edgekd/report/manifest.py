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

    manifest = {
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
        "plots": {k: _relative(v, root) for k, v in ctx.plots.items()},
    }
    return finalize(manifest)


def _relative(path, root: Path) -> str:
    """A plot's path relative to the run folder (plots/latency_local.png), so report.md's links resolve."""
    path = Path(path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


def manifest_verdicts(manifest: dict) -> list[dict]:
    """Every verdict in a manifest, each with its artifact's name."""
    return [{**v, "artifact": rec["name"]}
            for rec in manifest.get("artifacts") or [] for v in rec.get("verdicts") or []]


def finalize(manifest: dict) -> dict:
    """The overall verdict, why it is unverified, and the fp32-beside-quantized table, from the artifacts' verdicts
    and measurements: the same function for `edgekd export`, `edgekd bench` and `edgekd bench import`."""
    from edgekd.bench.budgets import UNVERIFIED, missing_budgets, overall_verdict, unverified_reasons

    from .markdown import artifact_rows

    verdicts = manifest_verdicts(manifest)
    missing = missing_budgets(manifest.get("budgets") or {}, verdicts, (manifest.get("model") or {}).get("task"))
    manifest["verdict"] = overall_verdict(verdicts, missing)
    manifest["verdict_notes"] = unverified_reasons(verdicts, missing) if manifest["verdict"] == UNVERIFIED else []
    manifest["missing_budgets"] = missing
    from edgekd.bench.core import DEVICE_RUNTIME

    backend = (manifest.get("profile") or {}).get("backend")
    manifest["comparison"] = artifact_rows(manifest.get("artifacts") or [], missing, DEVICE_RUNTIME.get(backend))
    return manifest

