"""Benchmark artifacts on a runner and judge them against the budgets: the bench stage and `edgekd bench`.

Both paths measure every artifact first and write nothing until all measurements succeeded, so a runner that fails
half-way (unreachable board, wrong key, missing remote runtime) leaves the manifest exactly as it was. Each runner's
result is stored under its own name (artifacts[].bench["local"], ["ssh"], ...) so one manifest can show a laptop and
a board side by side; each runner's verdicts replace only that runner's earlier verdicts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.config.schema import Budgets, Profile, RunnerConfig
from edgekd.errors import EdgekdError, GateFailed

from .budgets import FAIL, NOT_MEASURED, Verdict, evaluate, flat_metrics

# Budgets a bench run measures; accuracy_drop and perplexity_increase belong to verify and stay as it wrote them.
RUNNER_BUDGETS = ("latency_p50_ms", "latency_p90_ms", "peak_memory_mb", "prefill_tokens_per_s", "decode_tokens_per_s")
SIZE_BUDGETS = ("artifact_size_mb",)
PYTHON_RUNTIMES = ("onnxruntime", "executorch")
STATE_DIR = ".edgekd"  # inside the run folder: the ssh runner's private known_hosts


# ------------------------------------------------------------------------------------------------ runners
def make_runner(cfg: RunnerConfig, state_dir: Path, timeout_s: int = 900):
    """The runner the profile (or the command line) names, validated before anything is copied or run."""
    if cfg.kind == "local":
        from .local import LocalRunner

        return LocalRunner(timeout_s=timeout_s)
    if cfg.kind == "ssh":
        from .ssh import SshRunner

        if not cfg.host:
            raise EdgekdError("the ssh runner needs a host", key="runner.host", hint="set runner.host or --host")
        return SshRunner(host=cfg.host, user=cfg.user, port=cfg.port, key=cfg.key, remote_dir=cfg.remote_dir,
                         remote_python=cfg.remote_python, connect_timeout_s=cfg.connect_timeout_s,
                         known_hosts=Path(state_dir) / "known_hosts", timeout_s=timeout_s, binary=cfg.binary)
    if cfg.kind == "adb":
        from .adb import AdbRunner

        remote_dir = cfg.remote_dir if cfg.remote_dir != "/tmp/edgekd" else "/data/local/tmp/edgekd"
        return AdbRunner(binary=cfg.binary, serial=cfg.serial, remote_dir=remote_dir, timeout_s=timeout_s)
    raise EdgekdError("unknown runner", key="runner.kind", hint=f"got {cfg.kind!r}; allowed: local, ssh, adb")


def runnable(runner_kind: str, fmt: str, runtime: str) -> str:
    """Why an artifact cannot run on this runner ("" when it can); recorded, never skipped silently."""
    if runner_kind == "adb":
        return "" if runtime == "executorch" else f"the adb runner runs .pte files only, not {fmt}"
    if runner_kind == "ssh" and runtime == "tensorrt":
        return ""  # trtexec on the board (edgekd.bench.trtexec)
    if runtime not in PYTHON_RUNTIMES:
        return f"no {runtime} benchmark for the {runner_kind} runner (measure.py runs {', '.join(PYTHON_RUNTIMES)})"
    return ""


@dataclass
class Job:
    """One artifact to measure and where its results go."""

    name: str
    path: Path
    fmt: str
    runtime: str
    size_bytes: int
    parity: dict = field(default_factory=dict)
    is_reference: bool = False


@dataclass
class Outcome:
    job: Job
    result: dict | None
    verdicts: list[Verdict]
    skipped: str = ""


def run_jobs(jobs: list[Job], runner, inputs: Path, budgets: Budgets, warmup: int, runs: int, threads: int,
             cores: list[int] | None, progress=None) -> list[Outcome]:
    """Measure every job, then judge it; an EdgekdError from the runner propagates before anything is written."""
    from .runner import BenchRequest

    outcomes = []
    for job in jobs:
        why = runnable(runner.name, job.fmt, job.runtime)
        if why:
            outcomes.append(Outcome(job, None, [], skipped=why))
            continue
        if progress:
            progress(f"{job.name} on {runner.describe()}")
        request = BenchRequest(artifact=job.path, runtime=job.runtime, inputs=inputs, warmup=warmup, runs=runs,
                               threads=threads, cores=cores)
        result = runner.measure(request)
        verdicts = [] if job.is_reference else judge(budgets, result, job, runner.name)
        outcomes.append(Outcome(job, result, verdicts))
    return outcomes


def judge(budgets: Budgets, result: dict | None, job: Job, runner_name: str) -> list[Verdict]:
    metrics = flat_metrics(result, job.size_bytes, job.parity)
    limits = {k: v for k, v in budgets.model_dump().items() if k in RUNNER_BUDGETS}
    verdicts = evaluate(limits, metrics, artifact=job.name, runner=runner_name)
    sizes = {k: v for k, v in budgets.model_dump().items() if k in SIZE_BUDGETS}
    verdicts += evaluate(sizes, metrics, artifact=job.name, runner="")
    return verdicts


def merge_verdicts(existing: list[dict], new: list[Verdict], runner_name: str) -> list[dict]:
    """Replace this runner's verdicts and the size verdict; keep verify's and other runners' verdicts."""
    keep = [v for v in existing
            if not (v.get("runner") == runner_name and v.get("metric") in RUNNER_BUDGETS)
            and v.get("metric") not in SIZE_BUDGETS]
    return keep + [v.to_dict() for v in new]


# ------------------------------------------------------------------------------------------------ inputs
def write_inputs(path: Path, tensors, names: list[str] | None = None) -> Path:
    """The real example inputs as .npz (arrays named as the model's inputs, plus their order), written atomically."""
    import numpy as np

    from edgekd.report.atomic import atomic_path

    names = list(names or [f"input_{i}" for i in range(len(tensors))])
    arrays = {n: (t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)) for n, t in zip(names, tensors)}
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, __order__=np.array(names), **arrays)
    return Path(path)


# ------------------------------------------------------------------------------------------------ stage
# The runtime a profile's device executes: only its artifacts are judged against the device's budgets.
DEVICE_RUNTIME = {"executorch-xnnpack": "executorch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def bench_artifacts(ctx, cfg=None):
    """The bench stage: every artifact on the profile's runner, verdicts into ctx.artifacts[].verdicts."""
    profile: Profile = ctx.profile
    warmup = cfg.warmup if cfg is not None else 5
    runs = cfg.runs if cfg is not None else 30
    state = Path(ctx.work_dir or ctx.out_dir) / STATE_DIR
    runner = make_runner(profile.runner, state)
    inputs = write_inputs(Path(ctx.out_dir) / "inputs.npz", ctx.model.example_inputs, ctx.model.input_names)
    jobs = [Job(a.name, Path(a.path), a.format, a.runtime, a.bytes or Path(a.path).stat().st_size, a.parity,
                a.is_reference) for a in ctx.artifacts]
    outcomes = run_jobs(jobs, runner, inputs, ctx.budgets, warmup, runs, profile.threads, profile.cores,
                        progress=(lambda _msg: ctx.progress()) if ctx.progress else None)
    by_name = {a.name: a for a in ctx.artifacts}
    for out in outcomes:
        artifact = by_name[out.job.name]
        if out.skipped:
            ctx.decide("bench", out.job.name, "not benchmarked", out.skipped)
            continue
        artifact.bench[runner.name] = out.result
        if out.job.is_reference:
            ctx.decide("bench", out.job.name, "measured, not judged", "the fp32 reference is not a deliverable")
            continue
        if out.job.runtime != DEVICE_RUNTIME.get(profile.backend, out.job.runtime):
            ctx.decide("bench", out.job.name, "measured, not judged",
                       f"{profile.name} runs {DEVICE_RUNTIME[profile.backend]}; this {out.job.runtime} artifact is "
                       "for portability, and its time on this host says nothing about the device's budgets")
            continue
        artifact.verdicts = merge_verdicts(artifact.verdicts, out.verdicts, runner.name)
        for v in out.verdicts:
            if v.status == NOT_MEASURED:
                ctx.decide("bench", f"{out.job.name}: {v.metric}", "not measured",
                           f"the {runner.name} runner gave no value for it")
    ctx.metrics.setdefault("bench", {})[runner.name] = {"runner": runner.describe(), "warmup": warmup, "runs": runs,
                                                        "threads": profile.threads, "cores": profile.cores}
    try:
        from edgekd.report.plots_bench import plot_bench

        ctx.plots.update(plot_bench(outcomes_for_plots(outcomes), ctx.budgets, Path(ctx.out_dir), runner.name))
    except ImportError as exc:  # matplotlib is a dependency; a broken install is recorded, not fatal
        ctx.decide("bench", "plots", "not drawn", f"matplotlib unavailable: {exc}")
    return ctx


def outcomes_for_plots(outcomes: list[Outcome]) -> list[dict]:
    return [{"name": o.job.name, "bytes": o.job.size_bytes, "is_reference": o.job.is_reference,
             "samples": ((o.result or {}).get("latency_ms") or {}).get("samples")} for o in outcomes]


# ------------------------------------------------------------------------------------------------ folder
def load_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not Path(folder).is_dir():
        raise EdgekdError("artifacts folder not found", file=str(folder), key="--artifacts")
    if not path.is_file():
        raise EdgekdError("no manifest.json in the artifacts folder", file=str(folder), key="--artifacts",
                          hint="point --artifacts at an out/<name> folder written by edgekd export")
    from edgekd.config.loading import read_json

    manifest = read_json(path, what="manifest")
    if not isinstance(manifest.get("artifacts"), list):
        raise EdgekdError("manifest has no artifacts list", file=str(path), key="artifacts")
    for i, rec in enumerate(manifest["artifacts"]):
        if not isinstance(rec, dict):
            raise EdgekdError(f"artifact entry must be a JSON object, not {type(rec).__name__}", file=str(path),
                              key=f"artifacts[{i}]")
    for key in ("recipe", "inputs"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict if key == "recipe" else str):
            raise EdgekdError(f"wrong JSON type {type(manifest[key]).__name__}", file=str(path), key=key)
    return manifest


def manifest_budgets(profile: Profile, manifest: dict) -> Budgets:
    """The profile's budgets with the recipe's overrides (as recorded in the manifest), key by key, like a run."""
    merged = profile.budgets.model_dump()
    recipe_budgets = ((manifest.get("recipe") or {}).get("resolved") or {}).get("budgets") or {}
    if not isinstance(recipe_budgets, dict):
        raise EdgekdError("wrong JSON type (expected an object)", file="manifest.json", key="recipe.resolved.budgets")
    merged.update({k: v for k, v in recipe_budgets.items() if v is not None})
    try:
        return Budgets(**merged)
    except ValueError as exc:  # pydantic's ValidationError: a hand-edited manifest
        raise EdgekdError(f"invalid budgets: {' '.join(str(exc).split())[:200]}", file="manifest.json",
                          key="recipe.resolved.budgets") from exc


def jobs_from_manifest(folder: Path, manifest: dict) -> list[Job]:
    jobs = []
    where = str(Path(folder) / "manifest.json")
    for i, rec in enumerate(manifest["artifacts"]):
        for key in ("name", "path", "format", "runtime"):
            if not rec.get(key) or not isinstance(rec[key], str):
                raise EdgekdError("artifact entry lacks a required text field", file=where,
                                  key=f"artifacts[{i}].{key}")
        if not isinstance(rec.get("bytes") or 0, int) or not isinstance(rec.get("parity") or {}, dict):
            raise EdgekdError("wrong JSON type for bytes (integer) or parity (object)", file=where,
                              key=f"artifacts[{i}]")
        path = Path(rec["path"]) if Path(rec["path"]).is_absolute() else Path(folder) / rec["path"]
        if not path.is_file():
            raise EdgekdError("artifact file not found", file=str(path), key=f"artifacts[{i}].path")
        jobs.append(Job(rec["name"], path, rec["format"], rec["runtime"], int(rec.get("bytes") or path.stat().st_size),
                        rec.get("parity") or {}, bool(rec.get("is_reference"))))
    return jobs


@dataclass
class FolderResult:
    manifest: dict
    verdicts: list[dict]  # every verdict now in the manifest (all runners, verify's too)
    new: list[Verdict]  # what this run judged
    skipped: list[tuple[str, str]]
    runner: str
    files: dict[str, Path] = field(default_factory=dict)


def bench_folder(folder: Path, profile: Profile, runner_cfg: RunnerConfig | None = None, *, warmup: int = 5,
                 runs: int = 30, threads: int | None = None, cores: list[int] | None = None,
                 junit: Path | None = None, plots: bool = True, progress=None) -> FolderResult:
    """`edgekd bench`: measure out/NAME's artifacts on one runner, write results and verdicts into its manifest."""
    from edgekd.report.atomic import write_json

    folder = Path(folder)
    manifest = load_manifest(folder)
    jobs = jobs_from_manifest(folder, manifest)
    inputs = folder / (manifest.get("inputs") or "inputs.npz")
    if not inputs.is_file():
        raise EdgekdError("example inputs not found", file=str(inputs), key="inputs",
                          hint="edgekd export writes inputs.npz beside the manifest")
    budgets = manifest_budgets(profile, manifest)
    runner = make_runner(runner_cfg or profile.runner, folder / STATE_DIR)
    try:
        outcomes = run_jobs(jobs, runner, inputs, budgets, warmup, runs, threads or profile.threads,
                            cores if cores is not None else profile.cores, progress)
    finally:
        from edgekd.report.atomic import prune_empty_dirs

        prune_empty_dirs(folder / STATE_DIR)  # a failed ssh connection leaves no empty .edgekd/
    # All measurements are in: now (and only now) update the manifest and write the reports.
    skipped = []
    for rec, out in zip(manifest["artifacts"], outcomes):
        if out.skipped:
            skipped.append((out.job.name, out.skipped))
            rec.setdefault("bench", {})[runner.name] = {"status": "not run", "reason": out.skipped}
            continue
        rec.setdefault("bench", {})[runner.name] = out.result
        rec["verdicts"] = merge_verdicts(rec.get("verdicts") or [], out.verdicts, runner.name)
    all_verdicts = [{"artifact": rec["name"], **v} for rec in manifest["artifacts"] for v in rec.get("verdicts") or []]
    manifest["budgets"] = budgets.model_dump(mode="json")
    manifest.setdefault("bench_runs", {})[runner.name] = {
        "runner": runner.describe(), "profile": profile.name, "warmup": warmup, "runs": runs,
        "threads": threads or profile.threads, "cores": cores if cores is not None else profile.cores}
    manifest["verdict"] = "fail" if any(v.get("status") == FAIL for v in all_verdicts) else (
        "pass" if all_verdicts else "no budgets checked")
    files: dict[str, Path] = {}
    new = [v for o in outcomes for v in o.verdicts]
    if plots:
        from edgekd.report.plots_bench import plot_bench

        files.update(plot_bench(outcomes_for_plots(outcomes), budgets, folder, runner.name))
        manifest.setdefault("plots", {}).update({k: str(Path(v).relative_to(folder)) for k, v in files.items()})
    from edgekd.report.junit import append_github_summary, write_junit

    junit_path = Path(junit) if junit else folder / f"bench-{runner.name}.junit.xml"
    files["junit"] = write_junit(new, junit_path, suite=f"edgekd bench {profile.name} ({runner.name})")
    write_json(folder / "manifest.json", manifest)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        append_github_summary(new, title=f"edgekd bench: {folder.name} on {profile.name} ({runner.describe()})",
                              skipped=skipped)
    return FolderResult(manifest, all_verdicts, new, skipped, runner.name, files)


def raise_on_failures(verdicts: list[Verdict], strict: bool = False) -> None:
    """GateFailed (exit 1) naming every failed metric with its margin; with strict, unmeasured budgets fail too."""
    bad = [v for v in verdicts if v.status == FAIL or (strict and v.status == NOT_MEASURED)]
    if bad:
        lines = "; ".join(f"{v.artifact} [{v.runner or 'size'}]: {v.line()}" for v in bad)
        raise GateFailed(f"{len(bad)} budget(s) violated: {lines}")
