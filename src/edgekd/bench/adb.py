"""The adb runner: an Android phone, a benchmark binary already on it (profile runner.binary), the .pte pushed.

Phones have no Python, so the measurement is done by a native binary (ExecuTorch's executor_runner, or an edgekd
benchmark binary). Its contract: `BINARY --model_path=PTE --num_executions=N`; if it prints an edgekd JSON line
(the schema measure.py prints) that is used as is; otherwise executor_runner's summary line "Model executed
successfully N time(s) in T ms." gives the mean only, and the percentiles and memory are reported as not measured
(never guessed). Pinning uses toybox `taskset` when the profile names cores.

Every adb call is an argument list; the one string `adb shell` hands to the device shell is built with shlex.quote.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import EdgekdError

from .runner import BenchRequest, last_line, parse_measure_output

BINARY_OK = "EDGEKD_BINARY_OK"
_EXECUTED = re.compile(r"executed successfully (\d+) time\(s\) in ([0-9.]+) ?ms", re.IGNORECASE)


@dataclass
class AdbRunner:
    binary: str | None
    serial: str | None = None
    remote_dir: str = "/data/local/tmp/edgekd"
    adb: str = "adb"
    timeout_s: int = 900
    name: str = "adb"
    _session: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"adb {self.serial or '(only device)'} {self.binary}"

    def base(self) -> list[str]:
        return [self.adb, "-s", self.serial] if self.serial else [self.adb]

    def shell_command(self, device_argv: list[str]) -> list[str]:
        return [*self.base(), "shell", shlex.join(device_argv)]

    def push_command(self, local: Path, remote: str) -> list[str]:
        return [*self.base(), "push", str(local), remote]

    def pull_command(self, remote: str, local: Path) -> list[str]:
        return [*self.base(), "pull", remote, str(local)]

    def binary_command(self, model_path: str, executions: int, cores: list[int] | None = None) -> list[str]:
        argv = [str(self.binary), f"--model_path={model_path}", f"--num_executions={int(executions)}"]
        if cores:
            mask = sum(1 << int(c) for c in cores)
            argv = ["taskset", format(mask, "x"), *argv]
        return argv

    # ------------------------------------------------------------------------------------------ checks
    def _call(self, argv: list[str], what: str, timeout_s: int = 120) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise EdgekdError(f"adb not installed ({self.adb!r} not found)",
                              hint="install Android platform-tools (apt-get install adb)") from exc
        except subprocess.TimeoutExpired as exc:
            raise EdgekdError(f"adb {what} did not finish in {timeout_s} s") from exc

    def binary_probe_command(self) -> list[str]:
        """`adb shell` argv that prints a marker when the binary exists and is executable.

        The marker, not the exit status, decides: adb before 1.0.36 / devices before Android 7 return 0 from every
        `adb shell`. The path reaches the device shell as "$1" of a fixed script, never pasted into it.
        """
        script = f'test -x "$1" && echo {BINARY_OK}'
        return self.shell_command(["sh", "-c", script, "sh", str(self.binary)])

    def check(self) -> None:
        """adb present, the device attached and authorised, the benchmark binary on it: one clear line otherwise."""
        if shutil.which(self.adb) is None:
            raise EdgekdError(f"adb not installed ({self.adb!r} not found)",
                              hint="install Android platform-tools (apt-get install adb)")
        if not self.binary:
            raise EdgekdError("no benchmark binary configured for the adb runner", key="runner.binary",
                              hint="push executor_runner to the phone and set runner.binary to its path")
        proc = self._call([self.adb, "devices"], "devices", 30)
        if proc.returncode != 0:
            raise EdgekdError(f"adb devices failed: {last_line(proc.stderr or proc.stdout)}")
        problem = device_problem(parse_devices(proc.stdout), self.serial)
        if problem is not None:
            raise problem
        proc = self._call(self.binary_probe_command(), "binary check", 30)
        if BINARY_OK not in proc.stdout:
            raise binary_missing(self.binary)

    # ------------------------------------------------------------------------------------------ protocol
    def push(self, files: list[Path]) -> list[str]:
        session = f"{self.remote_dir.rstrip('/')}/run-{uuid.uuid4().hex[:12]}"
        proc = self._call(self.shell_command(["mkdir", "-p", session]), "mkdir", 30)
        if proc.returncode != 0:
            raise EdgekdError(f"adb: cannot create {session}: {last_line(proc.stderr or proc.stdout)}")
        self._session = session
        out = []
        for f in files:
            remote = f"{session}/{Path(f).name}"
            proc = self._call(self.push_command(Path(f), remote), "push", self.timeout_s)
            if proc.returncode != 0:
                raise EdgekdError(f"adb push {f} failed: {last_line(proc.stderr or proc.stdout)}")
            out.append(remote)
        return out

    def run(self, args: list[str]) -> dict:
        proc = self._call(self.shell_command(args), "benchmark", self.timeout_s)
        return parse_binary_output(proc.stdout + "\n" + proc.stderr, proc.returncode, f"adb {self.binary}")

    def collect(self, remote: str, local: Path) -> Path:
        proc = self._call(self.pull_command(remote, local), "pull", self.timeout_s)
        if proc.returncode != 0:
            raise EdgekdError(f"adb pull {remote} failed: {last_line(proc.stderr or proc.stdout)}")
        return Path(local)

    def cleanup(self) -> None:
        if self._session is None:
            return
        session, self._session = self._session, None
        try:
            self._call(self.shell_command(["rm", "-rf", session]), "cleanup", 60)
        except EdgekdError:
            pass

    def measure(self, request: BenchRequest) -> dict:
        if request.runtime != "executorch":
            raise EdgekdError(f"the adb runner runs .pte artifacts (executorch), not {request.runtime}",
                              file=str(request.artifact))
        self.check()
        try:
            (pte,) = self.push([Path(request.artifact)])
            if request.warmup:
                self.run(self.binary_command(pte, request.warmup, request.cores))
            result = self.run(self.binary_command(pte, request.runs, request.cores))
        finally:
            self.cleanup()
        result.setdefault("threads", "binary default")
        result.setdefault("cores", request.cores)
        result.setdefault("warmup", request.warmup)
        result["runner"] = self.describe()
        return result


def parse_devices(text: str) -> dict[str, str]:
    """`adb devices` -> {serial: state} (state: device, unauthorized, offline)."""
    states = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            states[parts[0]] = parts[1]
    return states


def device_problem(states: dict[str, str], serial: str | None) -> EdgekdError | None:
    """Why `adb devices` (parsed) rules out running on the configured device, or None when it is ready."""
    ready = [s for s, st in states.items() if st == "device"]
    if serial:
        state = states.get(serial)
        if state is None:
            return EdgekdError(f"no device {serial!r} attached", key="runner.serial",
                               hint=f"attached: {', '.join(states) or 'none'}")
        if state != "device":
            return EdgekdError(f"device {serial!r} is {state}", key="runner.serial",
                               hint="unlock the phone and accept the USB debugging prompt")
        return None
    if not ready:
        seen = f" ({', '.join(f'{s} {st}' for s, st in states.items())})" if states else ""
        return EdgekdError(f"no device attached{seen}", hint="connect a phone with USB debugging on (adb devices)")
    if len(ready) > 1:
        return EdgekdError(f"{len(ready)} devices attached; name one", key="runner.serial",
                           hint=f"attached: {', '.join(ready)}")
    return None


def binary_missing(binary: str) -> EdgekdError:
    return EdgekdError(f"benchmark binary missing on the device: {binary}", key="runner.binary",
                       hint=f"adb push executor_runner {binary} && adb shell chmod +x {binary}")


def parse_binary_output(text: str, returncode: int, where: str) -> dict:
    """An edgekd JSON line if the binary prints one, else executor_runner's summary line (mean only)."""
    if any(ln.strip().startswith("{") for ln in text.splitlines()):
        return parse_measure_output(text, "", returncode, where)
    if returncode != 0:
        raise EdgekdError(f"{where}: exit status {returncode}: {last_line(text)}")
    match = _EXECUTED.search(text)
    if not match:
        raise EdgekdError(f"{where}: no timing in its output: {last_line(text)}")
    n, total = int(match.group(1)), float(match.group(2))
    return {"ok": True, "runs": n, "latency_ms": {"n": n, "mean": total / n},
            "not_measured": ["latency percentiles (the binary reports only a total)", "peak resident memory"],
            "source": "executor_runner summary line"}
