"""`edgekd bench` and `edgekd size check`: thin click commands over edgekd.bench.core and edgekd.report.size.

Registered in edgekd/cli/app.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekd.cli.common import finite, handles_errors
from edgekd.errors import EXIT_OK, EdgekdError


def _split_host(host: str | None, user: str | None) -> tuple[str | None, str | None]:
    if host and "@" in host:
        u, h = host.rsplit("@", 1)
        return h, user or u
    return host, user


def _cores(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError as exc:
        raise EdgekdError("--cores must be comma-separated CPU ids", key="--cores", hint=repr(text)) from exc


@click.group("bench", invoke_without_command=True)
@click.option("--profile", "-p", default=None, help="device profile name or YAML path (budgets, runner, threads)")
@click.option("--artifacts", "-a", "folder", default=None, type=click.Path(path_type=Path),
              help="an out/<name> folder with manifest.json and inputs.npz")
@click.option("--runner", type=click.Choice(["local", "ssh", "adb"]), default=None,
              help="default: the profile's runner.kind")
@click.option("--host", default=None, help="ssh host, or user@host")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="ssh port")
@click.option("--user", default=None, help="ssh user")
@click.option("--key", default=None, type=click.Path(path_type=Path), help="ssh private key")
@click.option("--remote-python", default=None, help="python on the board (default: profile runner.remote_python)")
@click.option("--remote-dir", default=None, help="scratch folder on the board")
@click.option("--serial", default=None, help="adb device serial")
@click.option("--binary", default=None, help="adb: benchmark binary path on the device")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="default: the profile's threads")
@click.option("--cores", default=None, help="CPU ids to pin to, e.g. 4,5,6,7 (default: the profile's cores)")
@click.option("--junit", type=click.Path(path_type=Path), default=None,
              help="JUnit XML path (default: <artifacts>/bench-<runner>.junit.xml)")
@click.option("--no-plots", is_flag=True, help="do not draw the latency/size plots")
@click.option("--strict", is_flag=True,
              help="a budget that could not be measured, or was measured only on this host, fails too")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a profile key")
@click.pass_context
@handles_errors
def bench_command(click_ctx, profile, folder, runner, host, port, user, key, remote_python, remote_dir, serial, binary,
                  warmup, runs, threads, cores, junit, no_plots, strict, overrides):
    """Benchmark an artifacts folder on a runner (local, ssh, adb) and judge it against the profile's budgets.

    Results go into the folder's manifest.json under artifacts[].bench[<runner>], beside other runners' results,
    and report.md is rewritten. Latency and memory are judged only when measured on the profile's device (ssh, adb,
    or local when the profile sets runner.device_is_host); host timings are kept and the verdict says unverified.
    Exit 0: every budget met or unverified; 1: a budget violated (or unverified, with --strict); 2: bad input or
    runner error. `edgekd bench import` brings a log taken on the device instead.
    """
    from edgekd.bench.core import raise_on_failures
    from edgekd.bench.folder import bench_folder

    if click_ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--profile", profile), ("--artifacts", folder)) if value is None]
    if missing:
        raise EdgekdError(f"missing option(s) {', '.join(missing)}",
                          hint="edgekd bench --profile P --artifacts out/<name> [--runner ssh --host ...]")
    if warmup < 0 or runs < 1 or (threads is not None and threads < 1):
        raise EdgekdError("--warmup must be >= 0, --runs and --threads >= 1")
    from edgekd.config.loading import load_profile  # pydantic schemas: not for `edgekd --help`

    prof = load_profile(profile, list(overrides))
    host, user = _split_host(host, user)
    updates = {k: v for k, v in {"kind": runner, "host": host, "port": port, "user": user,
                                 "key": str(key) if key else None, "remote_python": remote_python,
                                 "remote_dir": remote_dir, "serial": serial, "binary": binary}.items()
               if v is not None}
    runner_cfg = prof.runner.model_copy(update=updates)
    runner_cfg = type(runner_cfg).model_validate(runner_cfg.model_dump())  # re-validate the merged values
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("benchmarking") as status:
        result = bench_folder(folder, prof, runner_cfg, warmup=warmup, runs=runs, threads=threads,
                              cores=_cores(cores), junit=junit, plots=not no_plots,
                              progress=lambda msg: status.update(f"benchmarking {msg}"))
    print_verdicts(result)
    raise_on_failures(result.new, strict=strict)
    sys.exit(EXIT_OK)


@bench_command.command("import")
@click.argument("log", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["trtexec", "executorch"]), required=True,
              help="trtexec: trtexec's output (its performance summary); executorch: executor_runner's output "
                   "(or a binary printing edgekd's JSON line), saved on the device")
@click.option("--artifacts", "-a", "folder", required=True, type=click.Path(path_type=Path),
              help="the out/<name> folder the log's artifact came from")
@click.option("--profile", "-p", required=True, help="device profile the log was taken on (its budgets)")
@click.option("--artifact", default=None, help="manifest name of the measured artifact (default: the only "
                                                   "deliverable for the profile's runtime)")
@click.option("--junit", type=click.Path(path_type=Path), default=None,
              help="JUnit XML path (default: <artifacts>/bench-import.junit.xml)")
@click.option("--strict", is_flag=True, help="a budget the log does not measure (e.g. peak memory) fails too")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a profile key")
@handles_errors
def bench_import_command(log, fmt, folder, profile, artifact, junit, strict, overrides):
    """Bring a benchmark log taken on the device into the manifest, the budget verdicts and report.md.

    The log is a device measurement: its latency is judged against the profile's budgets. What the log does not
    report (trtexec: process memory; executor_runner: percentiles and memory) stays "not measured" (unverified; a
    failure with --strict).
    """
    from edgekd.bench.core import raise_on_failures
    from edgekd.bench.folder import import_log

    from edgekd.config.loading import load_profile  # pydantic schemas: not for `edgekd --help`

    prof = load_profile(profile, list(overrides))
    result = import_log(folder, prof, log, fmt, artifact, junit)
    print_verdicts(result)
    raise_on_failures(result.new, strict=strict)
    sys.exit(EXIT_OK)


def print_verdicts(result) -> None:
    from rich.table import Table

    from edgekd.report.console import comparison_table, wide_console

    console = wide_console()  # names and "not measured" must never be cut to "…"
    console.print(comparison_table(result.manifest, "artifacts (every runner's best measurement)"))
    table = Table(title=f"budgets on the {result.runner} runner")
    for col in ("artifact", "runner", "budget", "value", "limit", "margin", "status"):
        table.add_column(col, justify="right" if col in ("value", "limit", "margin") else "left",
                         overflow="fold", no_wrap=col in ("budget", "status"))
    style = {"pass": "green", "fail": "red"}
    for v in result.new:
        unit = f" {v.unit}" if v.unit else ""
        value = (f"host {v.host_value:.4g}{unit}" if v.host_value is not None else "-") if v.value is None else \
            f"{v.value:.4g}{unit}"
        margin = "-" if v.margin is None else f"{v.margin:+.4g}{unit} ({v.margin_pct:+.1f}%)"
        table.add_row(v.artifact, v.runner or "-", v.metric, value, f"{v.limit:.4g}{unit}", margin,
                      f"[{style.get(v.status, 'yellow')}]{v.status}[/]")
    console.print(table)
    for name, why in result.skipped:
        console.print(f"[yellow]not benchmarked[/] {name}: {why}")
    for v in result.new:
        if v.status == "fail":
            console.print(f"[red]FAIL[/] {v.artifact} [{v.runner or 'size'}]: {v.line()}")
    for line in result.manifest.get("verdict_notes") or []:
        console.print(f"[yellow]unverified[/] {line}", highlight=False)
    console.print(f"verdict: {result.manifest.get('verdict')}", highlight=False)
    for name, path in result.files.items():
        console.print(f"{name}: {path}")


@click.group("size")
def size_group() -> None:
    """Artifact size gate for CI."""


@size_group.command("check")
@click.option("--baseline", required=True, type=click.Path(path_type=Path), help="sizes.json from an earlier run")
@click.argument("outs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tolerance-bytes", type=int, default=0, show_default=True, help="growth allowed in bytes")
@click.option("--tolerance-pct", type=float, default=0.0, show_default=True, callback=finite,
              help="growth allowed in percent of the baseline (the larger of the two tolerances applies)")
@click.option("--update-baseline", is_flag=True, help="rewrite the baseline with the current sizes (never by default)")
@click.option("--allow-removed", is_flag=True, help="pass when an artifact of the baseline is gone (default: exit 1)")
@handles_errors
def size_check_command(baseline, outs, tolerance_bytes, tolerance_pct, update_baseline, allow_removed):
    """Compare every artifact under OUT... with the baseline; exit 1 on growth beyond tolerance, naming what grew."""
    from rich.console import Console

    from edgekd.report.size import raise_on_regression, size_check

    result = size_check(baseline, list(outs), tolerance_bytes, tolerance_pct, update_baseline, allow_removed)
    console = Console(soft_wrap=True)  # one line per artifact in CI logs: tensor names are never wrapped or cut
    colour = {"regressed": "red", "shrunk": "green", "ok": "green", "new": "yellow",
              "removed": "yellow" if allow_removed else "red"}
    for check in result.checks:
        console.print(f"[{colour[check.status]}]{check.status:9}[/] {check.line()}", highlight=False)
        for g in check.groups[:6] if check.status == "regressed" else []:
            console.print(f"          by kind: {g.name} {g.before} -> {g.after} B (+{g.delta} B)", highlight=False)
    import os

    if os.environ.get("GITHUB_STEP_SUMMARY"):
        from edgekd.report.size import markdown

        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(f"### edgekd size check ({baseline})\n\n{markdown(result)}\n")
    if result.updated:
        console.print(f"baseline {'updated' if result.baseline_existed else 'created'}: {baseline}")
    raise_on_regression(result)
    sys.exit(EXIT_OK)
