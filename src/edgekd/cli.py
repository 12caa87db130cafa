"""The `edgekd` command line: a thin click layer. Every command builds a config and calls one function.

Exit codes (docs/architecture.md, rule 4): 0 all budgets met, 1 a budget/accuracy/size gate failed, 2 bad input or a
tool error.
Heavy libraries are imported inside the commands so `edgekd --help` stays fast (docs/architecture.md, rule 8).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from edgekd.errors import EXIT_BAD_INPUT, EdgekdError, InternalError


def handles_errors(fn):
    """Turn any exception a command raises into its `error:` lines and exit code; a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own usage errors and exits: click prints them (exit 2 for usage)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-written was kept", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the top-level guard: one line per problem, never a traceback
            _report(exc)

    return wrapper


def finite(ctx, param, value):
    """click callback for float options: nan and inf pass FloatRange's bounds, so refuse them here."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug")) or os.environ.get("EDGEKD_DEBUG") == "1"


def _command_path() -> str:
    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "edgekd"


def _report(exc: Exception, command: str | None = None) -> None:
    """Print `exc` as `error:` lines and exit: EdgekdError with its own code, anything else exit 2.

    An OSError or MemoryError is the environment's (disk full, permission, out of memory): named with the command.
    Anything else is a bug in edgekd: "internal error", the command, the exception type and the innermost edgekd
    frame, so a report can be filed from the one line; --debug (or EDGEKD_DEBUG=1) adds the full traceback."""
    import traceback

    if _debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, EdgekdError):
        for line in exc.error_lines():
            click.echo(line, err=True)
        sys.exit(exc.code)
    detail = " ".join(str(exc).split())
    detail = detail if len(detail) <= 300 else detail[:300] + "..."
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if isinstance(exc, (OSError, MemoryError)) and not isinstance(exc, InternalError):
        click.echo(f"error: {command or _command_path()} failed: {what}", err=True)
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
        ours = [f for f in frames if f"{os.sep}edgekd{os.sep}" in f.filename]
        where = ""
        for label, frame in (("at", frames[-1] if frames else None), ("from", ours[-1] if ours else None)):
            if frame is not None and (label == "at" or frame is not frames[-1]):
                where += f" {label} {_short_path(frame.filename)}:{frame.lineno} in {frame.name}"
        hint = "" if _debug_enabled() else "; rerun with --debug for the traceback"
        click.echo(f"error: internal error in {command or _command_path()}: {what}{where}{hint}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _usage_error(exc: click.ClickException) -> None:
    """click's own errors (bad option value, unknown command) as one `error:` line and exit 2, like edgekd's."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        raise exc  # a bare group: click prints its help
    where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "edgekd"
    click.echo(f"error: {where}: {' '.join(exc.format_message().split())}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _short_path(filename: str) -> str:
    """edgekd/stages/fuse.py, torch/nn/functional.py: the package-relative part a bug report needs."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor):])
    return Path(filename).name


class GuardedGroup(click.Group):
    """The top-level group: an exception escaping a command without handles_errors still becomes one line, and so
    does a usage error (click's default is a usage block plus `Error:`)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            _usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except click.ClickException as exc:
            _usage_error(exc)
        except Exception as exc:  # noqa: BLE001 - see _report
            _report(exc, " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand))))


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="edgekd")
@click.option("--debug", is_flag=True, help="print the full traceback of an error (also EDGEKD_DEBUG=1)")
@click.option("--verbose", "-v", is_flag=True,
              help="show the libraries' own warnings and log lines (torch, torchao, ExecuTorch, onnxscript); --debug too")
def main(debug: bool, verbose: bool) -> None:
    """edgekd: take a distilled student network to phones, Jetsons and CPUs, with budgets that gate the result."""
    from edgekd.report.noise import silence_libraries

    click.get_current_context().call_on_close(silence_libraries(verbose or debug))


# ------------------------------------------------------------------------------------------------ export
@main.command()
@click.option("--profile", "-p", required=True, help="device profile name (edgekd profiles list) or YAML path")
@click.option("--recipe", "-r", default=None, type=click.Path(path_type=Path),
              help="recipe YAML (default: the built-in EfficientNet-Lite0 int8 recipe)")
@click.option("--out", "-o", "out_root", default=Path("out"), type=click.Path(path_type=Path), show_default=True,
              help="folder that receives out/<recipe name>/")
@click.option("--force", is_flag=True, help="replace an existing output folder")
@click.option("--resume", is_flag=True, help="continue training stages from their last checkpoint")
@click.option("--device", default="cpu", show_default=True, help="torch device for training stages (cpu, cuda)")
@click.option("--skip", multiple=True, help="stage to skip (repeatable), e.g. --skip bench")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a recipe key (stages.bench.runs=10) or a profile key (profile.threads=2)")
@click.option("--strict", is_flag=True, help="exit 1 when a budget is unverified (not measured on the device)")
@click.option("--model", "-m", "model", default=None, metavar="PATH",
              help="your model instead of a recipe: a Hugging Face folder, FILE.py:factory or FILE.pt2; the recipe "
                   "used is written to out/<name>/recipe.yaml")
@click.option("--data", default=None, metavar="PATH",
              help="with --model: a folder of images, FILE.npy/.npz or FILE.txt (default: built-in real data)")
@click.option("--task", default=None, type=click.Choice(["image-classification", "sentence-embedding",
                                                         "text-classification"]),
              help="with --model: the task (default: image-classification; HF folders: detected)")
@handles_errors
def export(profile, recipe, out_root, force, resume, device, skip, overrides, strict, model, data, task):
    """Run a recipe (or --model) for a device profile: stages, artifacts, verification, benchmark, verdict."""
    import signal

    from edgekd.run import DEFAULT_RECIPE, export_run

    def _terminated(signum, frame):  # SIGTERM unwinds like Ctrl-C: staging folders and claims are released
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminated)
    if model is None and (data is not None or task is not None):
        raise EdgekdError("--data and --task go with --model; a recipe names its data in its data section",
                          key="--data" if data is not None else "--task")
    if model is not None:
        if recipe is not None:
            raise EdgekdError("give --model or --recipe, not both", key="--model")
        from edgekd.config.generate import export_model

        sys.exit(export_model(model, data, task, profile, out_root, force=force, resume=resume, device=device,
                              skip=tuple(skip), overrides=list(overrides), strict=strict))
    code = export_run(recipe or DEFAULT_RECIPE, profile, out_root, force=force, resume=resume, device=device,
                      skip=tuple(skip), overrides=list(overrides), strict=strict)
    sys.exit(code)


# ------------------------------------------------------------------------------------------------ config
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@handles_errors
def validate(files):
    """Validate recipe and profile YAML files; every problem in every file is reported."""
    from edgekd.config.loading import load_any

    failed = []
    for path in files:
        try:
            load_any(path)
            click.echo(f"ok   {path}")
        except EdgekdError as exc:
            click.echo(f"FAIL {path}")
            for line in exc.error_lines():
                click.echo(line, err=True)
            failed.append(path)
    if failed:
        sys.exit(EXIT_BAD_INPUT)


@main.command("show-config")
@click.option("--profile", "-p", required=True)
@click.option("--recipe", "-r", required=True, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@handles_errors
def show_config(profile, recipe, overrides):
    """Print the fully resolved recipe and profile (defaults and overrides applied) as YAML."""
    import yaml

    from edgekd.config.loading import load_recipe_and_profile

    rec, prof, _, _ = load_recipe_and_profile(recipe, profile, list(overrides))
    click.echo(yaml.safe_dump({"recipe": rec.model_dump(mode="json"), "profile": prof.model_dump(mode="json")},
                              sort_keys=False))


@main.group()
def profiles() -> None:
    """Device profiles: targets, runners and budgets."""


@profiles.command("list")
@handles_errors
def profiles_list():
    from rich.console import Console

    from edgekd.config.loading import available_profiles, find_profile, load_any
    from edgekd.report.console import budget_lines, listing_table

    rows = []
    for name in available_profiles():
        prof = load_any(find_profile(name))
        rows.append([name, prof.backend, prof.precision, prof.runner.kind, str(prof.threads),
                     budget_lines(prof.budgets.model_dump())])
    Console().print(listing_table({"profile": 14, "backend": 11, "precision": 9, "runner": 6, "threads": 7,
                                   "budgets": 0}, rows))


@profiles.command("show")
@click.argument("name")
@handles_errors
def profiles_show(name):
    import yaml

    from edgekd.config.loading import available_profiles, find_profile, load_any

    path = find_profile(name)
    if path is None:
        raise EdgekdError("unknown device profile", key="NAME", hint=f"allowed: {', '.join(available_profiles())}")
    click.echo(f"# {path}")
    click.echo(yaml.safe_dump(load_any(path).model_dump(mode="json"), sort_keys=False))


@main.group()
def recipes() -> None:
    """Recipes shipped with edgekd."""


@recipes.command("list")
@handles_errors
def recipes_list():
    from rich.console import Console

    from edgekd.config.loading import available_recipes, load_any
    from edgekd.report.console import listing_table

    rows = []
    for path in available_recipes():
        rec = load_any(path)
        enabled = [k for k, v in rec.stages if v is not None and getattr(v, "enabled", True)]
        rows.append([str(path.relative_to(path.parents[1])), rec.model.source, " ".join(enabled), rec.description])
    Console().print(listing_table({"recipe": 22, "model": 19, "stages": 15, "description": None}, rows))


# Commands of the other areas register themselves below (bench, size, lint, sensitivity, llm).
# Each lives in the module of its area and is added here with main.add_command(...).
from edgekd.quant.cli import sensitivity as _sensitivity_command  # noqa: E402

main.add_command(_sensitivity_command)
from edgekd.llm.cli import llm as _llm_group  # noqa: E402

main.add_command(_llm_group)

from edgekd.bench.cli import bench_command as _bench_command, size_group as _size_group  # noqa: E402

main.add_command(_bench_command)
main.add_command(_size_group)
from edgekd.lint.cli import lint_command as _lint_command  # noqa: E402

main.add_command(_lint_command)


if __name__ == "__main__":
    main()
