"""Benchmark artifacts on a runner and judge them against the budgets: the bench stage (here) and `edgekd bench`
(edgekd.bench.folder).

Both paths measure every artifact first and write nothing until all measurements succeeded, so a runner that fails
half-way (unreachable board, wrong key, missing remote runtime) leaves the manifest exactly as it was. Each runner's
result is stored under its own name (artifacts[].bench["local"], ["ssh"], ...) so one manifest can show a laptop and
a board side by side; each runner's verdicts replace only that runner's earlier verdicts.

Every result records where it was measured (`device`: host or the profile's device, runner, description). Latency
and memory budgets are judged only by a device measurement (edgekd.bench.budgets); a host run is kept as host timings.
An export never needs a reachable board: when the profile's runner is a board that is not configured or does not
answer, the stage records the device bench as not run, times the artifacts on this host instead, and leaves the
device measurement to `edgekd bench` or `edgekd bench import`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.backends import device_runtime_of
from edgekd.config.schema import Budgets, Profile, RunnerConfig
from edgekd.errors import EdgekdError, GateFailed

from .budgets import FAIL, NOT_MEASURED, NOT_ON_DEVICE, PASS, Verdict, evaluate, flat_metrics, site

# Budgets a bench run measures; accuracy_drop and perplexity_increase belong to verify and stay as it wrote them.
RUNNER_BUDGETS = ("latency_p50_ms", "latency_p90_ms", "peak_memory_mb", "prefill_tokens_per_s", "decode_tokens_per_s",
                  "min_speedup_vs_fp32")
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


def effective_threads(runner_kind: str, threads: int) -> tuple[int, str]:
    """Threads for a run and a note when capped: on this host never more than its usable cores (a profile's 4
    threads on a 2-core CI box oversubscribe and measure contention). A board's cores are the board's business."""
    if runner_kind != "local" or not hasattr(os, "sched_getaffinity"):
        return threads, ""
    usable = len(os.sched_getaffinity(0))
    if threads > usable:
        return usable, f"threads capped at {usable} (this host's usable cores), the profile asks for {threads}"
    return threads, ""


def is_judged(runtime: str, details: dict | None, device_runtime: str | None) -> bool:
    """A deliverable for the device: its runtime is the device's, and it is not a baseline kept for comparison
    (the PTQ baseline beside a QAT run is measured, never gated)."""
    return runtime == device_runtime and (details or {}).get("role") != "baseline"


def machine_description(runner) -> str:
    """What the measuring machine is: this host's CPU and usable cores for the local runner, the board otherwise."""
    if runner.name != "local":
        return runner.describe()
    from .compare import machine_info

    info = machine_info()
    return f"this host: {info['cpu']}, {info['usable_cpus']} usable cores ({runner.describe()})"


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
    precision: str = ""
    judged: bool = True  # a deliverable for the profile's device runtime: judged against the budgets


@dataclass
class Outcome:
    job: Job
    result: dict | None
    verdicts: list[Verdict]
    skipped: str = ""


def run_jobs(jobs: list[Job], runner, inputs: Path, budgets: Budgets, warmup: int, runs: int, threads: int,
             cores: list[int] | None, progress=None, where: dict | None = None) -> list[Outcome]:
    """Measure every job, then judge it; an EdgekdError from the runner propagates before anything is written.

    where: the measurement site (budgets.site); its measured_on decides whether device budgets are judged."""
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
        if where is not None:
            result["device"] = dict(where)
        outcomes.append(Outcome(job, result, []))
    add_speedups(outcomes)
    device = None if where is None else where["measured_on"] == "device"
    for out in outcomes:
        if out.result is not None and out.job.judged and not out.job.is_reference:
            out.verdicts = judge(budgets, out.result, out.job, runner.name, device)
    return outcomes


def fp32_partner(job: Job, jobs: list[Job]) -> Job | None:
    """The fp32 artifact of the same runtime and format (what quantizing is measured against)."""
    if job.precision in ("", "fp32"):
        return None
    return next((j for j in jobs if j.precision == "fp32" and j.runtime == job.runtime and j.fmt == job.fmt), None)


def speedup(fp32_result: dict | None, result: dict | None) -> float | None:
    """fp32 p50 / this p50, both from the same runner in the same run; None when either is missing."""
    try:
        return fp32_result["latency_ms"]["p50"] / result["latency_ms"]["p50"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def add_speedups(outcomes: list[Outcome]) -> None:
    by_name = {o.job.name: o for o in outcomes}
    jobs = [o.job for o in outcomes]
    for out in outcomes:
        partner = fp32_partner(out.job, jobs)
        if partner is None or out.result is None:
            continue
        value = speedup(by_name[partner.name].result, out.result)
        if value is not None:
            out.result["speedup_vs_fp32"] = value
            out.result["speedup_basis"] = f"p50 of {partner.name} / p50 of {out.job.name}, same runner, same run"


def judge(budgets: Budgets, result: dict | None, job: Job, runner_name: str, device: bool | None) -> list[Verdict]:
    metrics = flat_metrics(result, job.size_bytes, job.parity)
    limits = {k: v for k, v in budgets.model_dump().items() if k in RUNNER_BUDGETS}
    verdicts = evaluate(limits, metrics, artifact=job.name, runner=runner_name, device=device)
    sizes = {k: v for k, v in budgets.model_dump().items() if k in SIZE_BUDGETS}
    verdicts += evaluate(sizes, metrics, artifact=job.name, runner="")
    memory = (result or {}).get("memory_for_budget") or {}
    for v in verdicts:
        if v.metric == "peak_memory_mb" and memory.get("basis"):
            v.basis = memory["basis"]
    return verdicts


def merge_verdicts(existing: list[dict], new: list[Verdict], runner_name: str) -> list[dict]:
    """Replace this runner's verdicts and the size verdict; keep verify's and other runners' verdicts. A device
    measurement (pass or fail) of a budget supersedes every "not measured on the device" row of that budget."""
    keep = [v for v in existing
            if not (v.get("runner") == runner_name and v.get("metric") in RUNNER_BUDGETS)
            and v.get("metric") not in SIZE_BUDGETS]
    merged = keep + [v.to_dict() for v in new]
    judged = {v["metric"] for v in merged if v.get("measured_on") == "device" and v.get("status") in (PASS, FAIL)}
    return [v for v in merged if not (v.get("status") == NOT_ON_DEVICE and v.get("metric") in judged)]


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
def device_bench_hint(profile: Profile, folder: str = "out/<name>") -> str:
    kind = profile.runner.kind
    target = "--host <board>" if kind == "ssh" else "--serial <adb serial>" if kind == "adb" else "--runner adb|ssh"
    return (f"run `edgekd bench --profile {profile.name} --artifacts {folder} {target}` on the device, or "
            f"`edgekd bench import --format trtexec LOG --artifacts {folder} --profile {profile.name}`")


def stage_runner(profile: Profile, state: Path):
    """The profile's runner for an export, or (None, why) when it is a board that is not configured."""
    if profile.runner.kind == "ssh" and not profile.runner.host:
        return None, "the profile's ssh runner has no runner.host"
    return make_runner(profile.runner, state), ""


def bench_artifacts(ctx, cfg=None):
    """The bench stage: every artifact on the profile's runner, verdicts into ctx.artifacts[].verdicts."""
    from .local import LocalRunner

    profile: Profile = ctx.profile
    warmup = cfg.warmup if cfg is not None else 5
    runs = cfg.runs if cfg is not None else 30
    state = Path(ctx.work_dir or ctx.out_dir) / STATE_DIR
    inputs = write_inputs(Path(ctx.out_dir) / "inputs.npz", ctx.model.example_inputs, ctx.model.input_names)
    device_runtime = device_runtime_of(profile.backend)
    jobs = [Job(a.name, Path(a.path), a.format, a.runtime, a.bytes or Path(a.path).stat().st_size, a.parity,
                a.is_reference, a.precision, judged=is_judged(a.runtime, a.details, device_runtime))
            for a in ctx.artifacts]
    progress = (lambda _msg: ctx.progress()) if ctx.progress else None
    runner, why_not = stage_runner(profile, state)
    outcomes = None
    if runner is not None:
        threads, note = effective_threads(runner.name, profile.threads)
        where = site(runner.name, profile.runner.device_is_host, machine_description(runner), profile.name)
        try:
            outcomes = run_jobs(jobs, runner, inputs, ctx.budgets, warmup, runs, threads, profile.cores, progress,
                                where)
        except EdgekdError as exc:
            if runner.name == "local":
                raise
            why_not = f"the {runner.name} runner failed: {exc.render()}"
    if outcomes is None:  # the board is not reachable from this export: host timings, device bench left to later
        ctx.decide("bench", f"device ({profile.runner.kind})", "not run", f"{why_not}; {device_bench_hint(profile)}")
        ctx.metrics.setdefault("bench", {})["device"] = {"status": "not run", "reason": why_not,
                                                          "next": device_bench_hint(profile)}
        for a in ctx.artifacts:
            if a.runtime == device_runtime:
                a.bench[profile.runner.kind] = {"status": "not run", "reason": why_not}
        runner = LocalRunner()
        threads, note = effective_threads("local", profile.threads)
        where = site("local", False, machine_description(runner), profile.name)
        outcomes = run_jobs(jobs, runner, inputs, ctx.budgets, warmup, runs, threads, profile.cores, progress, where)
    if note:
        ctx.decide("bench", "threads", f"{threads} threads", note)
    _record(ctx, outcomes, runner, where, device_runtime)
    ctx.metrics.setdefault("bench", {})[runner.name] = {
        "runner": runner.describe(), "warmup": warmup, "runs": runs, "threads": threads, "threads_note": note,
        "profile_threads": profile.threads, "cores": profile.cores, "device": where}
    try:
        from edgekd.report.plots_bench import plot_bench

        ctx.plots.update(plot_bench(outcomes_for_plots(outcomes), plot_budgets(ctx.budgets, where),
                                    Path(ctx.out_dir), runner.name))
    except ImportError as exc:  # matplotlib is a dependency; a broken install is recorded, not fatal
        ctx.decide("bench", "plots", "not drawn", f"matplotlib unavailable: {exc}")
    return ctx


def _record(ctx, outcomes: list[Outcome], runner, where: dict, device_runtime: str | None) -> None:
    by_name = {a.name: a for a in ctx.artifacts}
    for out in outcomes:
        artifact = by_name[out.job.name]
        if out.skipped:
            ctx.decide("bench", out.job.name, "not benchmarked", out.skipped)
            continue
        artifact.bench[runner.name] = out.result
        if out.job.is_reference:
            ctx.decide("bench", out.job.name, "measured, not judged", "the fp32 reference is not a deliverable; "
                       "it is the baseline of the speedup column")
            continue
        if not out.job.judged:
            why = (f"{ctx.profile.name} runs {device_runtime}; this {out.job.runtime} artifact is for portability, "
                   "and its time here says nothing about the device's budgets") if out.job.runtime != device_runtime \
                else "a baseline kept for comparison, not a deliverable"
            ctx.decide("bench", out.job.name, "measured, not judged", why)
            continue
        artifact.verdicts = merge_verdicts(artifact.verdicts, out.verdicts, runner.name)
        for v in out.verdicts:
            if v.status == NOT_MEASURED:
                ctx.decide("bench", f"{out.job.name}: {v.metric}", "not measured",
                           v.basis or f"the {runner.name} runner gave no value for it")
    if where["measured_on"] == "host":
        ctx.decide("bench", "latency and memory", "host timings, not judged",
                   f"measured on this host ({where['description']}), not on the {ctx.profile.name} device; "
                   + device_bench_hint(ctx.profile))


def plot_budgets(budgets: Budgets, where: dict) -> Budgets:
    """The budget lines a plot draws: a host run's latency is not set against the device's latency budget."""
    if where.get("measured_on") == "device":
        return budgets
    return Budgets(artifact_size_mb=budgets.artifact_size_mb)


def outcomes_for_plots(outcomes: list[Outcome]) -> list[dict]:
    return [{"name": o.job.name, "bytes": o.job.size_bytes, "is_reference": o.job.is_reference,
             "samples": ((o.result or {}).get("latency_ms") or {}).get("samples")} for o in outcomes]


def raise_on_failures(verdicts: list[Verdict], strict: bool = False) -> None:
    """GateFailed (exit 1) naming every failed metric with its margin; with strict, unmeasured budgets fail too."""
    bad = [v for v in verdicts if v.status == FAIL or (strict and v.status in (NOT_MEASURED, NOT_ON_DEVICE))]
    if bad:
        lines = "; ".join(f"{v.artifact} [{v.runner or 'size'}]: {v.line()}" for v in bad)
        raise GateFailed(f"{len(bad)} budget(s) violated or unverified: {lines}")
