"""The local runner: measure.py in a fresh subprocess of this interpreter.

A fresh process, not this one, because peak resident memory must be that of a process that loaded only this model
(the edgekd process holds torch, the teacher and the data); the numbers are then comparable with the ssh runner's.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgekdError

from .runner import BenchRequest, measure_with_python, parse_measure_output


@dataclass
class LocalRunner:
    python: str = sys.executable
    name: str = "local"
    timeout_s: int = 900

    def describe(self) -> str:
        return f"local ({self.python})"

    def push(self, files: list[Path]) -> list[str]:
        """Nothing to copy: the files are already here; the absolute paths are returned."""
        out = []
        for f in files:
            if not Path(f).is_file():
                raise EdgekdError("file not found", file=str(f))
            out.append(str(Path(f).resolve()))
        return out

    def run(self, args: list[str]) -> dict:
        timeout_s = self.timeout_s
        try:
            proc = subprocess.run([self.python, *args], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise EdgekdError(f"local benchmark did not finish in {timeout_s} s") from exc
        except OSError as exc:
            raise EdgekdError(f"cannot start {self.python}: {exc.strerror}") from exc
        return parse_measure_output(proc.stdout, proc.stderr, proc.returncode, "local")

    def collect(self, remote: str, local: Path) -> Path:
        return Path(remote)

    def cleanup(self) -> None:
        """Nothing was copied, nothing to remove."""

    def measure(self, request: BenchRequest) -> dict:
        return measure_with_python(self, request)
