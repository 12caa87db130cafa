"""Helpers for the hostile-input tests (issue 15): run edgekd in-process or as a real process, check refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edgekd.cli import main
from tests.conftest import ROOT

EDGEKD = [sys.executable, "-c", "import sys; sys.argv[0] = 'edgekd'; from edgekd.cli import main; main()"]


def cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def assert_refused(result, *expect: str, lines: int = 1) -> str:
    """Exit 2, exactly `lines` error lines (no traceback, no `error: : `), each expected fragment in stderr."""
    text = result.stderr if hasattr(result, "stderr") else ""
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    errors = error_lines(text)
    assert code == 2, (code, text, getattr(result, "exception", None))
    assert len(errors) == lines, text
    assert "Traceback" not in text and not any(e.startswith("error: :") for e in errors), text
    for fragment in expect:
        assert fragment in text, text
    return " ".join(errors)


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    env.pop("EDGEKD_DEBUG", None)
    return env


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
