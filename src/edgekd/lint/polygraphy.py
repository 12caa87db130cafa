"""Run `polygraphy check lint` and turn its JSON report into Violations.

polygraphy's lint runs the ONNX checker and executes the model node by node in onnxruntime (no TensorRT needed:
verified here with polygraphy 0.53.6 and onnxruntime 1.32). It catches what our static rules cannot: nodes that
fail to run, wrong shapes, unused inputs. It runs as a subprocess so a crash in it cannot take the lint down.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd.lint.result import Violation

SEVERITY = {"exception": "error", "warning": "warning", "info": "warning"}


def polygraphy_executable() -> str | None:
    beside = Path(sys.executable).with_name("polygraphy")
    return str(beside) if beside.exists() else shutil.which("polygraphy")


def polygraphy_lint(path: Path, timeout_s: int = 300) -> tuple[list[Violation], str]:
    """Violations from `polygraphy check lint`, and a note on what ran (or why it could not)."""
    exe = polygraphy_executable()
    if exe is None:
        return [], "polygraphy lint not run: polygraphy is not installed (pip install polygraphy==0.53.6)"
    with tempfile.TemporaryDirectory(prefix="edgekd-polygraphy-") as tmp:
        report = Path(tmp) / "lint.json"
        try:
            proc = subprocess.run([exe, "check", "lint", str(path), "-o", str(report)], capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return [Violation("PGY000", "polygraphy-timeout", "graph", f"polygraphy lint ran over {timeout_s}s",
                              "run `polygraphy check lint` by hand", "warning")], "polygraphy lint timed out"
        if not report.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return [Violation("PGY000", "polygraphy-failed", "graph", f"polygraphy lint wrote no report: {tail}",
                              "run `polygraphy check lint MODEL.onnx` by hand", "warning")], "polygraphy lint failed"
        data = json.loads(report.read_text())
    out = []
    for entry in data.get("lint_entries", []):
        nodes = entry.get("nodes") or ["graph"]
        out.append(Violation(f"PGY-{entry.get('source', 'lint')}", "polygraphy", ",".join(nodes)[:200],
                             entry.get("message", "").strip()[:500], "see `polygraphy check lint` output",
                             SEVERITY.get(entry.get("level", "warning"), "warning")))
    summary = data.get("summary", {})
    note = (f"polygraphy check lint: {len(summary.get('passing', []))} nodes passing, "
            f"{len(summary.get('failing', []))} failing (onnxruntime-based; TensorRT not needed)")
    return out, note
