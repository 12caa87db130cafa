"""The runner protocol: push files to where the model runs, run the measurement there, collect, clean up.

Three runners implement it (local.py, ssh.py, adb.py). They are plain dataclasses with the same four methods plus
`measure(request)`, so `edgekd bench` and the bench stage drive any of them the same way and store each runner's
result side by side in the manifest (artifacts[].bench[<runner name>]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgekd.errors import EdgekdError

MEASURE_SCRIPT = Path(__file__).with_name("measure.py")


@dataclass
class BenchRequest:
    """What to measure and how: one artifact, its real example inputs (.npz), repetitions, threads, cores."""

    artifact: Path
    runtime: str  # onnxruntime, executorch
    inputs: Path
    warmup: int = 5
    runs: int = 30
    threads: int = 1
    cores: list[int] | None = None
    timeout_s: int = 900

    def measure_args(self, script: str, artifact: str, inputs: str) -> list[str]:
        """The argument list of measure.py for this request (paths as they are where the script runs)."""
        args = [script, "--artifact", artifact, "--runtime", self.runtime, "--inputs", inputs,
                "--warmup", str(self.warmup), "--runs", str(self.runs), "--threads", str(self.threads)]
        if self.cores:
            args += ["--cores", ",".join(str(int(c)) for c in self.cores)]
        return args


class Runner(Protocol):
    name: str

    def describe(self) -> str: ...

    def push(self, files: list[Path]) -> list[str]: ...

    def run(self, args: list[str]) -> dict: ...

    def collect(self, remote: str, local: Path) -> Path: ...

    def cleanup(self) -> None: ...

    def measure(self, request: BenchRequest) -> dict: ...


def measure_with_python(runner: Runner, request: BenchRequest) -> dict:
    """Push measure.py, the artifact and the inputs, run the script with the runner's Python, always clean up."""
    try:
        script, artifact, inputs = runner.push([MEASURE_SCRIPT, Path(request.artifact), Path(request.inputs)])
        result = runner.run(request.measure_args(script, artifact, inputs))
    finally:
        runner.cleanup()
    result["runner"] = runner.describe()
    return result


def parse_measure_output(stdout: str, stderr: str, returncode: int, where: str) -> dict:
    """The JSON object measure.py printed, or one clear EdgekdError line naming where it ran and why it failed."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                break
            if not result.get("ok"):
                raise EdgekdError(f"{where}: {result.get('error', 'measurement failed')}")
            return result
    last = last_line(stderr) or last_line(stdout) or f"exit status {returncode}"
    raise EdgekdError(f"{where}: the benchmark printed no result: {last}")


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
