"""lint_onnx: load the model once, run the target's rules, fold in polygraphy's lint."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.lint.result import LintResult

TARGETS = ("tensorrt",)


def lint_onnx(path: Path, target: str = "tensorrt", *, shapes: dict | None = None,
              polygraphy: bool = True) -> LintResult:
    """Lint one ONNX file for `target`. `shapes` is the profile's tensorrt.shapes ({input: ShapeRange or dict});
    without it dynamic dims are warnings (nothing to check them against)."""
    import onnx

    from edgekd.lint.graph import index_graph
    from edgekd.lint.tensorrt import run_rules

    if target not in TARGETS:
        raise EdgekdError(f"unknown lint target {target!r}", key="--target", hint=f"allowed: {', '.join(TARGETS)}")
    path = Path(path)
    if not path.exists():
        raise EdgekdError("no such ONNX file", file=str(path))
    if not path.is_file():
        raise EdgekdError("not a file (a directory or device); expected an ONNX model", file=str(path))
    if path.stat().st_size == 0:
        raise EdgekdError("empty file (0 bytes); expected an ONNX model", file=str(path))
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf errors
        raise EdgekdError(f"not a readable ONNX file: {' '.join(str(exc).split())[:200]}", file=str(path)) from exc
    # protobuf parses many byte strings as a message with no fields: an ONNX model has an IR version and a graph
    if not model.ir_version or not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise EdgekdError("not an ONNX model (no IR version or no graph)", file=str(path))
    violations, checks, notes = run_rules(index_graph(model), shapes)
    result = LintResult(str(path), target, violations, checks, notes)
    if polygraphy:
        from edgekd.lint.polygraphy import polygraphy_lint

        found, note = polygraphy_lint(path)
        result.violations.extend(found)
        result.checks_run.append("polygraphy check lint")
        result.notes.append(note)
    else:
        result.notes.append("polygraphy check lint not run (polygraphy=False)")
    return result
