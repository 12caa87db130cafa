"""`edgekd lint MODEL.onnx --target tensorrt`: the readiness lint on the command line.

Exit codes (docs/architecture.md, rule 4): 0 no errors (warnings are printed), 1 at least one error-level violation,
2 the file is
missing or not a readable ONNX, or a bad option. Registered in edgekd/cli/app.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgekd.cli.common import handles_errors
from edgekd.errors import EXIT_GATE_FAILED


@click.command("lint")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", default="tensorrt", show_default=True, type=click.Choice(["tensorrt"]),
              help="the runtime whose import rules are checked")
@click.option("--profile", "-p", default=None,
              help="device profile (name or YAML): its tensorrt.shapes are checked against the dynamic inputs")
@click.option("--no-polygraphy", is_flag=True, help="skip `polygraphy check lint` (runs the graph in onnxruntime)")
@click.option("--json", "as_json", is_flag=True, help="print the full result as JSON")
@handles_errors
def lint_command(model, target, profile, no_polygraphy, as_json):
    """Check that a Q/DQ ONNX builds into a fused int8 TensorRT engine: each violation with its node and fix."""
    from edgekd.lint import lint_onnx

    shapes = None
    if profile:
        from edgekd.config.loading import load_profile

        prof = load_profile(profile, [])
        shapes = {n: s.model_dump() for n, s in (prof.tensorrt.shapes if prof.tensorrt else {}).items()}
        shapes.update(_batch_ranges(model, prof, shapes))
    result = lint_onnx(model, target, shapes=shapes, polygraphy=not no_polygraphy)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for v in result.violations:
            click.echo(v.render())
        for note in result.notes:
            click.echo(f"note    {note}")
        verdict = "ok" if result.ok else "FAIL"
        click.echo(f"{verdict}: {model} for {target}: {len(result.errors)} error(s), "
                   f"{len(result.violations) - len(result.errors)} warning(s); checks: {', '.join(result.checks_run)}")
    if not result.ok:
        sys.exit(EXIT_GATE_FAILED)


def _batch_ranges(path: Path, prof, given: dict) -> dict:
    """What edgekd export derives for inputs the profile does not list: batch 1..max(batch_sizes) on a dynamic
    axis 0, the model's sizes elsewhere. Inputs with other dynamic axes are left out (TRT009 reports them)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - lint_onnx reports the unreadable file with exit 2
        return {}
    out = {}
    top = max(prof.batch_sizes or [1])
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in given or not dims:
            continue
        if any(not d.HasField("dim_value") for d in dims[1:]) or dims[0].HasField("dim_value"):
            continue
        rest = [d.dim_value for d in dims[1:]]
        out[inp.name] = {"min": [1, *rest], "opt": [(prof.batch_sizes or [1])[0], *rest], "max": [top, *rest]}
    return out
