"""The `edgekd` command line: a thin click layer. Every command builds a config and calls one function.

Exit codes (house rule 4): 0 all budgets met, 1 a budget/accuracy/size gate failed, 2 bad input or a tool error.
Heavy libraries are imported inside the commands so `edgekd --help` stays fast (house rule 8).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from edgekd.errors import EXIT_BAD_INPUT, EdgekdError


def handles_errors(fn):
    """Turn EdgekdError into a clear message on stderr and its exit code; never a traceback for user mistakes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgekdError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            sys.exit(exc.code)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-written was kept", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="edgekd")
def main() -> None:
    """edgekd: take a distilled student network to phones, Jetsons and CPUs, with budgets that gate the result."""


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
@handles_errors
def export(profile, recipe, out_root, force, resume, device, skip, overrides, strict):
    """Run a recipe for a device profile: stages, artifacts, verification, benchmark, verdict."""
    from edgekd.run import DEFAULT_RECIPE, export_run

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
            click.echo(f"FAIL {exc.render()}", err=True)
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
    from rich.table import Table

    from edgekd.config.loading import available_profiles, find_profile, load_any

    table = Table("profile", "backend", "precision", "runner", "threads", "budgets")
    for name in available_profiles():
        prof = load_any(find_profile(name))
        budgets = ", ".join(f"{k}={v}" for k, v in prof.budgets.model_dump().items() if v is not None)
        table.add_row(name, prof.backend, prof.precision, prof.runner.kind, str(prof.threads), budgets)
    Console().print(table)


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
    from rich.table import Table

    from edgekd.config.loading import available_recipes, load_any

    table = Table("recipe", "model", "stages", "description")
    for path in available_recipes():
        rec = load_any(path)
        enabled = [k for k, v in rec.stages if v is not None and getattr(v, "enabled", True)]
        table.add_row(str(path.relative_to(path.parents[1])), rec.model.source, " ".join(enabled), rec.description)
    Console().print(table)


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
