"""`edgekd bench` and `edgekd bench import` on an out/<name> folder: measure (or read a device log), judge, and
update manifest.json, the JUnit file and report.md together.

Nothing is written until every measurement succeeded (or the log parsed), so a failed run leaves the folder as it
was. A log imported from the device (trtexec's performance summary, taken on the Jetson by a field engineer) is a
device measurement like the ssh runner's, stored under artifacts[].bench["import"] with the file it came from.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.backends import device_runtime_of
from edgekd.config.schema import Budgets, Profile, RunnerConfig
from edgekd.errors import EdgekdError

from .budgets import Verdict, site
from .core import (STATE_DIR, Job, effective_threads, is_judged, judge, machine_description,
                   make_runner, merge_verdicts, outcomes_for_plots, plot_budgets, run_jobs)


def load_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not Path(folder).is_dir():
        raise EdgekdError("artifacts folder not found", file=str(folder), key="--artifacts")
    if not path.is_file():
        raise EdgekdError("no manifest.json in the artifacts folder", file=str(folder), key="--artifacts",
                          hint="point --artifacts at an out/<name> folder written by edgekd export")
    from edgekd.report.manifest import read_manifest

    return read_manifest(path)


def manifest_budgets(profile: Profile, manifest: dict) -> Budgets:
    """The profile's budgets with the recipe's overrides (as recorded in the manifest), key by key, like a run."""
    merged = profile.budgets.model_dump()
    recipe_budgets = ((manifest.get("recipe") or {}).get("resolved") or {}).get("budgets") or {}
    if not isinstance(recipe_budgets, dict):
        raise EdgekdError("wrong JSON type (expected an object)", file="manifest.json", key="recipe.resolved.budgets")
    merged.update({k: v for k, v in recipe_budgets.items() if v is not None and k in merged})
    try:
        return Budgets(**merged)
    except ValueError as exc:  # pydantic's ValidationError: a hand-edited manifest
        raise EdgekdError(f"invalid budgets: {' '.join(str(exc).split())[:200]}", file="manifest.json",
                          key="recipe.resolved.budgets") from exc


def jobs_from_manifest(folder: Path, manifest: dict, profile: Profile) -> list[Job]:
    jobs = []
    where = str(Path(folder) / "manifest.json")
    device_runtime = device_runtime_of(profile.backend)
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
                        rec.get("parity") or {}, bool(rec.get("is_reference")), rec.get("precision", ""),
                        judged=is_judged(rec["runtime"], rec.get("details"), device_runtime)))
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
    folder = Path(folder)
    manifest = load_manifest(folder)
    jobs = jobs_from_manifest(folder, manifest, profile)
    inputs = folder / (manifest.get("inputs") or "inputs.npz")
    if not inputs.is_file():
        raise EdgekdError("example inputs not found", file=str(inputs), key="inputs",
                          hint="edgekd export writes inputs.npz beside the manifest")
    budgets = manifest_budgets(profile, manifest)
    cfg = runner_cfg or profile.runner
    runner = make_runner(cfg, folder / STATE_DIR)
    n_threads, note = effective_threads(runner.name, threads or profile.threads)
    where = site(runner.name, cfg.device_is_host, machine_description(runner), profile.name)
    try:
        outcomes = run_jobs(jobs, runner, inputs, budgets, warmup, runs, n_threads,
                            cores if cores is not None else profile.cores, progress, where)
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
    manifest.setdefault("bench_runs", {})[runner.name] = {
        "runner": runner.describe(), "profile": profile.name, "warmup": warmup, "runs": runs, "threads": n_threads,
        "threads_note": note, "profile_threads": threads or profile.threads, "device": where,
        "cores": cores if cores is not None else profile.cores}
    files: dict[str, Path] = {}
    if plots:
        from edgekd.report.plots_bench import plot_bench

        files.update(plot_bench(outcomes_for_plots(outcomes), plot_budgets(budgets, where), folder, runner.name))
        manifest.setdefault("plots", {}).update({k: str(Path(v).relative_to(folder)) for k, v in files.items()})
    new = [v for o in outcomes for v in o.verdicts]
    return _finish(folder, manifest, budgets, profile, runner.name, runner.describe(), new, skipped, files, junit)


# log format -> the runtime whose artifact it measures
LOG_RUNTIME = {"trtexec": "tensorrt", "executorch": "executorch"}


def parse_log(fmt: str, text: str, where: str) -> tuple[dict, str]:
    """A device log as a bench result plus a description of the machine it names.

    trtexec: its performance summary (percentiles; no process memory). executorch: executor_runner's output (the
    adb runner's parser: an edgekd JSON line if the binary printed one, else the mean of N executions only)."""
    if fmt == "trtexec":
        from .trtexec import bench_result, parse_trtexec_output

        parsed = parse_trtexec_output(text, where=where)
        result = bench_result(parsed)
        result["source_command"] = parsed.get("command")
        device = parsed.get("device") or "no 'Selected Device' line"
        return result, f"{device}, TensorRT {parsed.get('tensorrt_version', '?')}"
    if fmt == "executorch":
        from .adb import parse_binary_output

        return parse_binary_output(text, 0, where), "the device the log was taken on (executor_runner)"
    raise EdgekdError("unknown log format", key="--format", hint=f"got {fmt!r}; allowed: {', '.join(LOG_RUNTIME)}")


def import_log(folder: Path, profile: Profile, log: Path, fmt: str = "trtexec", artifact: str | None = None,
               junit: Path | None = None) -> FolderResult:
    """`edgekd bench import`: a benchmark log taken on the device becomes that artifact's device measurement."""
    folder, log = Path(folder), Path(log)
    if fmt not in LOG_RUNTIME:
        raise EdgekdError("unknown log format", key="--format", hint=f"got {fmt!r}; allowed: {', '.join(LOG_RUNTIME)}")
    manifest = load_manifest(folder)
    if not log.is_file():
        raise EdgekdError("log file not found", file=str(log), key="LOG")
    text = log.read_text(errors="replace")
    result, device = parse_log(fmt, text, str(log))
    rec = _import_target(manifest, LOG_RUNTIME[fmt], artifact, folder)
    budgets = manifest_budgets(profile, manifest)
    result["device"] = site("import", False, f"{fmt} log {log.name}: {device}", profile.name)
    result["source"] = {"format": fmt, "file": str(log.resolve()), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    job = Job(rec["name"], Path(rec["path"]), rec["format"], rec["runtime"], int(rec.get("bytes") or 0),
              rec.get("parity") or {}, bool(rec.get("is_reference")), rec.get("precision", ""))
    new = judge(budgets, result, job, "import", device=True)
    for v in new:
        if v.value is None and v.status == "not measured":
            v.basis = f"the {fmt} log does not report it"
    rec.setdefault("bench", {})["import"] = result
    rec["verdicts"] = merge_verdicts(rec.get("verdicts") or [], new, "import")
    manifest.setdefault("bench_runs", {})["import"] = {"runner": f"imported {fmt} log {log}", "profile": profile.name,
                                                       "device": result["device"], "threads": "as on the device"}
    return _finish(folder, manifest, budgets, profile, "import", f"{fmt} log {log.name}", new, [], {}, junit)


def _import_target(manifest: dict, runtime: str, name: str | None, folder: Path) -> dict:
    """The artifact a device log belongs to: --artifact NAME, or the one deliverable of the log's runtime."""
    records = manifest["artifacts"]
    where = str(folder / "manifest.json")
    if name:
        match = [r for r in records if r.get("name") == name]
        if not match:
            raise EdgekdError("no such artifact in the manifest", file=where, key="--artifact",
                              hint=f"got {name!r}; allowed: {', '.join(r['name'] for r in records)}")
        if match[0].get("runtime") != runtime:
            raise EdgekdError(f"this log measures a {runtime} artifact, {name} is {match[0].get('runtime')}",
                              file=where, key="--artifact")
        return match[0]
    match = [r for r in records if r.get("runtime") == runtime and not r.get("is_reference")
             and (r.get("details") or {}).get("role") != "baseline"]
    if len(match) != 1:
        raise EdgekdError(f"{len(match)} {runtime} artifacts in the manifest; name the one the log measured",
                          file=where, key="--artifact", hint=f"allowed: {', '.join(r['name'] for r in records)}")
    return match[0]


def _finish(folder: Path, manifest: dict, budgets: Budgets, profile: Profile, runner: str, described: str,
            new: list[Verdict], skipped: list, files: dict, junit: Path | None) -> FolderResult:
    """Verdict, manifest.json, report.md and JUnit, all from the updated manifest."""
    from edgekd.report.atomic import write_text
    from edgekd.report.junit import append_github_summary, write_junit
    from edgekd.report.manifest import finalize, manifest_verdicts, write_manifest
    from edgekd.report.markdown import render_manifest

    manifest["budgets"] = budgets.model_dump(mode="json")
    manifest.setdefault("recipe", {"name": folder.name})  # a folder not written by `edgekd export`: name it
    manifest.setdefault("profile", {"name": profile.name, "backend": profile.backend,
                                    "resolved": profile.model_dump(mode="json")})
    finalize(manifest)
    junit_path = Path(junit) if junit else folder / f"bench-{runner}.junit.xml"
    files["junit"] = write_junit(new, junit_path, suite=f"edgekd bench {profile.name} ({runner})")
    write_manifest(folder, manifest)
    files["report"] = write_text(folder / "report.md", render_manifest(manifest))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        append_github_summary(new, title=f"edgekd bench: {folder.name} on {profile.name} ({described})",
                              skipped=skipped)
    return FolderResult(manifest, manifest_verdicts(manifest), new, skipped, runner, files)
