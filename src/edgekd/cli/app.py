"""The `edgekd` command line: a thin click layer. Every command builds a config and calls one function.

Exit codes (docs/architecture.md, rule 4): 0 all budgets met, 1 a budget/accuracy/size gate failed, 2 bad input or a
tool error.
Heavy libraries are imported inside the commands so `edgekd --help` stays fast (docs/architecture.md, rule 8).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekd.cli.bench import bench_command, size_group
from edgekd.cli.common import GuardedGroup, handles_errors
from edgekd.cli.lint import lint_command
from edgekd.cli.llm import llm
from edgekd.cli.sensitivity import sensitivity
from edgekd.errors import EXIT_BAD_INPUT, EdgekdError


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


# The commands of the other areas, each in its module of this package.
for _command in (sensitivity, llm, bench_command, size_group, lint_command):
    main.add_command(_command)


if __name__ == "__main__":
    main()
