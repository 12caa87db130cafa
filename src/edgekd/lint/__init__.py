"""Readiness lint for ONNX files: does this Q/DQ network build into the engine its target runtime promises?

`lint_onnx(path, target="tensorrt")` returns a LintResult whose violations each name a rule id, the node, what is
wrong and the fix; `edgekd lint MODEL.onnx --target tensorrt` prints it (edgekd/cli/lint.py). Rules live in
edgekd.lint.tensorrt; polygraphy's own lint (`polygraphy check lint`) is folded in by edgekd.lint.polygraphy.
"""

from edgekd.lint.result import LintResult, Violation
from edgekd.lint.run import lint_onnx

__all__ = ["LintResult", "Violation", "lint_onnx"]
