"""manifest.json: the machine-readable record of a run (inputs, decisions, artifacts with sizes and hashes,
parity, latency, memory and every budget verdict). CI jobs and `edgekd bench` / `edgekd size check` read it.

This module is the only one that writes or reads the file (`write_manifest`, `read_manifest`), both through the
`Manifest` model, so a hand-edited or truncated manifest is one error naming the file and key, never a KeyError deep
in a command. Keys a newer edgekd added are kept as they are (extra="allow").
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekd.config.loading import file_sha256
from edgekd.context import Context
from edgekd.errors import EdgekdError

MANIFEST_VERSION = 1


class ArtifactRecord(BaseModel):
    """One artifact as manifest.json stores it (edgekd.context.Artifact, its path relative to the run folder)."""

    model_config = ConfigDict(extra="allow")
    name: str
    path: str
    format: str = ""
    runtime: str = ""
    precision: str = ""
    bytes: int = 0
    sha256: str = ""
    is_reference: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    bench: dict[str, Any] = Field(default_factory=dict)
    verdicts: list[dict[str, Any]] = Field(default_factory=list)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    manifest_version: int = MANIFEST_VERSION
    created: str = ""
    recipe: dict[str, Any] = Field(default_factory=dict)
    profile: dict[str, Any] = Field(default_factory=dict)
    budgets: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    inputs: str = "inputs.npz"
    artifacts: list[ArtifactRecord]
    metrics: dict[str, Any] = Field(default_factory=dict)
    report_sections: dict[str, str] = Field(default_factory=dict)  # {title: markdown} of task-specific areas
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)
    plots: dict[str, str] = Field(default_factory=dict)
    bench_runs: dict[str, Any] = Field(default_factory=dict)
    verdict: str = ""
    verdict_notes: list[str] = Field(default_factory=list)
    missing_budgets: list[str] = Field(default_factory=list)
    comparison: list[dict[str, Any]] = Field(default_factory=list)


def _validated(data: Any, file: str) -> dict:
    if not isinstance(data, dict):
        raise EdgekdError(f"top level must be a JSON object, not {type(data).__name__}", file=file)
    try:
        return Manifest.model_validate(data).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
        raise EdgekdError(f"not an edgekd manifest: {first['msg']}", file=file, key=key or "manifest") from None


def read_manifest(path: Path) -> dict:
    """manifest.json as a validated dict (the renderers and verdict code work on plain JSON data)."""
    from edgekd.inputs import read_json

    return _validated(read_json(Path(path), what="manifest"), str(path))


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Validate and write folder/manifest.json atomically."""
    from edgekd.report.atomic import write_json

    return write_json(Path(folder) / "manifest.json", _validated(manifest, str(Path(folder) / "manifest.json")))


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
        "report_sections": ctx.report_sections,
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

    from .comparison import artifact_rows

    verdicts = manifest_verdicts(manifest)
    missing = missing_budgets(manifest.get("budgets") or {}, verdicts, (manifest.get("model") or {}).get("task"))
    manifest["verdict"] = overall_verdict(verdicts, missing)
    manifest["verdict_notes"] = unverified_reasons(verdicts, missing) if manifest["verdict"] == UNVERIFIED else []
    manifest["missing_budgets"] = missing
    from edgekd.backends import device_runtime_of

    backend = (manifest.get("profile") or {}).get("backend")
    manifest["comparison"] = artifact_rows(manifest.get("artifacts") or [], missing, device_runtime_of(backend))
    return manifest

