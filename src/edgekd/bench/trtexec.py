"""trtexec on the Jetson: the command that times an engine, and the parser that turns its log into a bench result.

Why trtexec and not a Python script: it is what ships with JetPack (/usr/src/tensorrt/bin/trtexec), it needs no
Python TensorRT bindings on the board, and its "Performance summary" is what NVIDIA's own guides quote. The ssh
runner (edgekd.bench.ssh) hands requests with runtime "tensorrt" to `measure_with_trtexec`, which copies the
engine (or the Q/DQ ONNX, built on the device with the same flags as trtexec.sh), runs trtexec there and parses
its output into the same shape measure.py prints (latency_ms.p50/p90..., so the jetson-orin budgets apply).

The summary lines it parses (TensorRT 8.x and 10.x print the same labels; 8.x prints fewer percentiles):
  [I] Throughput: 18392 qps
  [I] Latency: min = 0.0334 ms, max = 0.882 ms, mean = 0.0432 ms, median = 0.0387 ms, percentile(90%) = 0.0481 ms, ...
  [I] GPU Compute Time: min = ..., median = ..., percentile(99%) = ... ms
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekd.errors import EdgekdError

DEFAULT_BINARY = "/usr/src/tensorrt/bin/trtexec"  # JetPack's location; not on PATH by default

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_STAT = re.compile(rf"(min|max|mean|median|percentile\(({_NUM})%\))\s*=\s*({_NUM})\s*(ms|s)\b")
_SERIES = {"Latency": "latency_ms", "GPU Compute Time": "gpu_compute_ms", "Enqueue Time": "enqueue_ms",
           "H2D Latency": "h2d_ms", "D2H Latency": "d2h_ms", "End-to-End Host Latency": "e2e_host_latency_ms"}
_LINE = re.compile(r"^(?:.*?\]\s*)?(?P<label>[A-Za-z0-9 \-]+?):\s*(?P<rest>.*)$")


def _stats(rest: str) -> dict:
    out = {}
    for name, pct, value, unit in _STAT.findall(rest):
        v = float(value) * (1000.0 if unit == "s" else 1.0)
        if name.startswith("percentile"):
            p = float(pct)
            out[f"p{int(p) if p.is_integer() else p}"] = v
        else:
            out[name] = v
    if "median" in out:
        out.setdefault("p50", out["median"])
    return out


def parse_trtexec_output(text: str, where: str = "trtexec") -> dict:
    """Throughput, latency and GPU compute statistics (ms) from trtexec's performance summary.

    Raises EdgekdError naming the reason when there is no summary: trtexec failed (&&&& FAILED), or it ran with
    --dumpProfile, which replaces the end-to-end timing with a per-layer profile."""
    out: dict = {"tool": "trtexec"}
    in_summary = False
    for raw in text.splitlines():
        line = raw.strip()
        if "=== Performance summary ===" in line:
            in_summary = True
            continue
        if line.startswith("&&&&"):
            out["status"] = "passed" if "PASSED" in line else ("failed" if "FAILED" in line else out.get("status"))
            if "# " in line:
                out["command"] = line.split("# ", 1)[1]
            version = re.search(r"\[TensorRT v(\d+)\]", line)
            if version:
                out["tensorrt_build"] = version.group(1)
            continue
        m = _LINE.match(line)
        if not m:
            continue
        label, rest = m.group("label").strip(), m.group("rest")
        if label == "TensorRT version":
            out["tensorrt_version"] = rest.strip()
        elif label == "Selected Device":
            out["device"] = rest.strip()
        elif not in_summary:
            continue
        elif label == "Throughput":
            q = re.match(rf"({_NUM})\s*qps", rest.strip())
            if q:
                out["throughput_qps"] = float(q.group(1))
        elif label in _SERIES:
            stats = _stats(rest)
            if stats:
                out[_SERIES[label]] = stats
        elif label in ("Total Host Walltime", "Total GPU Compute Time"):
            t = re.match(rf"({_NUM})\s*(ms|s)\b", rest.strip())
            if t:
                key = "total_host_walltime_s" if label.startswith("Total Host") else "total_gpu_compute_s"
                out[key] = float(t.group(1)) / (1000.0 if t.group(2) == "ms" else 1.0)
    if "latency_ms" not in out:
        if out.get("status") == "failed":
            why = "trtexec reported FAILED"
        elif "=== Profile (" in text:
            why = "trtexec ran with --dumpProfile, which prints a per-layer profile instead of the end-to-end " \
                  "timing (add --separateProfileRun)"
        else:
            why = "no '=== Performance summary ===' with a Latency line in its output"
        raise EdgekdError(f"{where}: {why}")
    return out


def bench_result(parsed: dict, batch: int | None = None) -> dict:
    """The parsed summary in measure.py's result shape (latency_ms.p50/p90/..., ok), keeping trtexec's numbers.

    Latency is trtexec's host latency per query (H2D + compute + D2H), the number a caller waits for; GPU compute
    time is kept beside it. Peak memory is not in trtexec's summary and stays unmeasured (reported, not guessed)."""
    result = {"ok": True, "runtime": "tensorrt", "latency_ms": dict(parsed["latency_ms"]),
              "gpu_compute_ms": dict(parsed.get("gpu_compute_ms") or {}),
              "throughput_qps": parsed.get("throughput_qps"), "trtexec": parsed,
              "not_measured": {"peak_rss_mb": "trtexec does not report process memory"}}
    if batch:
        result["batch"] = batch
        if parsed.get("throughput_qps") is not None:
            result["throughput_samples_per_s"] = parsed["throughput_qps"] * batch
    return result


def trtexec_time_argv(binary: str, artifact: str, *, warmup_ms: int = 500, runs: int = 30,
                      shapes: dict[str, list[int]] | None = None, build_flags: list[str] | None = None) -> list[str]:
    """trtexec argv that times `artifact`: an .engine with --loadEngine, or a Q/DQ .onnx built on the device with
    `build_flags` (the flags of trtexec.sh, without --skipInference) and then timed."""
    if artifact.endswith(".onnx"):
        argv = [binary, f"--onnx={artifact}", *[f for f in (build_flags or ["--int8", "--fp16"])
                                                  if f != "--skipInference" and not f.startswith(("--onnx=",
                                                                                                  "--saveEngine="))]]
    else:
        argv = [binary, f"--loadEngine={artifact}"]
    argv += [f"--warmUp={int(warmup_ms)}", f"--iterations={int(runs)}", "--avgRuns=10"]
    if shapes:
        argv.append("--shapes=" + ",".join(f"{n}:{'x'.join(str(int(d)) for d in s)}" for n, s in shapes.items()))
    return argv


def shapes_from_inputs(inputs: Path) -> dict[str, list[int]]:
    """Input shapes from the run's inputs.npz (the real example inputs), for trtexec --shapes."""
    import numpy as np

    with np.load(inputs, allow_pickle=False) as data:
        order = [str(n) for n in data["__order__"]] if "__order__" in data.files else \
            [n for n in data.files if n != "__order__"]
        return {n: list(data[n].shape) for n in order}


def build_flags_beside(artifact: Path) -> list[str] | None:
    """The build flags of the trtexec.sh that edgekd export wrote next to a Q/DQ ONNX (None when there is none), so
    an engine built on the board has the plan's precisions and the profile's shapes."""
    import shlex

    script = Path(artifact).with_name("trtexec.sh")
    if not script.is_file():
        return None
    text = script.read_text().replace("\\\n", " ")
    line = next((ln for ln in text.splitlines() if ln.startswith('"$TRTEXEC"')), None)
    if line is None:
        return None
    drop = ("--onnx=", "--saveEngine=", "--timingCacheFile=", "--skipInference")
    return [f for f in shlex.split(line)[1:] if not f.startswith(drop)]


def measure_with_trtexec(runner, request, binary: str | None = None) -> dict:
    """Copy the engine (or ONNX) to the board, run trtexec there, parse its summary; always clean up.

    `runner` is an SshRunner (its ssh_command/_call/push/cleanup); `binary` defaults to the runner's `binary`
    (profile runner.binary) or JetPack's path. trtexec feeds random inputs of the example shapes: latency of a
    dense network does not depend on values."""
    binary = binary or getattr(runner, "binary", None) or DEFAULT_BINARY
    where = f"trtexec on {runner.describe()}"
    try:
        (remote,) = runner.push([Path(request.artifact)])
        shapes = shapes_from_inputs(Path(request.inputs)) if request.inputs else None
        argv = trtexec_time_argv(binary, remote, runs=request.runs, shapes=shapes,
                                 warmup_ms=max(200, 100 * int(request.warmup)),
                                 build_flags=build_flags_beside(Path(request.artifact)))
        proc = runner._call(runner.ssh_command(argv), "trtexec", request.timeout_s)
    finally:
        runner.cleanup()
    if proc.returncode == 127:
        raise EdgekdError(f"{where}: {binary} not found on the board", key="runner.binary",
                          hint="JetPack installs it at /usr/src/tensorrt/bin/trtexec")
    parsed = parse_trtexec_output(proc.stdout + "\n" + proc.stderr, where)
    batch = None
    if shapes:
        first = next(iter(shapes.values()))
        batch = first[0] if first else None
    result = bench_result(parsed, batch)
    result["command"] = " ".join(argv)
    result["runner"] = runner.describe()
    return result
