#!/usr/bin/env python3
"""Measure one artifact inside the process that runs it, and print one JSON object on stdout.

Why a self-contained script: the same file runs here (the local runner starts it in a fresh interpreter, so the
peak resident memory is that of a process that only loaded this model) and on a remote board (the ssh runner copies
it there and runs it with the board's python3). It must therefore import nothing from edgekd, only the standard
library, numpy and the runtime that executes the artifact.

    python3 measure.py --artifact model.onnx --runtime onnxruntime --inputs inputs.npz \
        --warmup 5 --runs 30 --threads 1 --cores 2,3

Inputs are an .npz of the real example inputs, in positional order (keys input_0, input_1, ... or the input names
with an "__order__" array). The JSON always has "ok"; on failure "error" is one line and the exit status is 3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import socket
import statistics
import sys
import time

SCHEMA_VERSION = 1
EXIT_MEASURE_FAILED = 3
MB = 1_000_000  # decimal megabytes, like the size budget and the precision solver


class MeasureError(Exception):
    """A problem measuring (missing runtime, unreadable artifact); reported as one JSON line, never a traceback."""


# ------------------------------------------------------------------------------------------------ memory
def _proc_status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def memory_snapshot() -> dict:
    """Current and peak resident memory of this process in MB (10^6 bytes, as every edgekd budget).

    VmHWM (Linux) is the resident high-water mark; ru_maxrss is the portable fallback (KiB on Linux, bytes on macOS).
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_mb = maxrss / MB if sys.platform == "darwin" else maxrss * 1024 / MB
    hwm = _proc_status_kb("VmHWM")
    rss = _proc_status_kb("VmRSS")
    return {
        "rss_mb": round(rss * 1024 / MB, 3) if rss is not None else None,
        "peak_rss_mb": round(hwm * 1024 / MB, 3) if hwm is not None else round(maxrss_mb, 3),
        "peak_source": "VmHWM" if hwm is not None else "ru_maxrss",
    }


# ------------------------------------------------------------------------------------------------ statistics
def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; the input must be sorted."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(dof: int) -> float:
    """Two-sided 95% Student t quantile (table, conservative: the next smaller tabulated dof)."""
    if dof <= 0:
        return float("inf")
    keys = [k for k in sorted(_T95) if k <= dof]
    return _T95[keys[-1]] if dof <= 120 else 1.960


def summarize(latencies_ms: list[float], seed: int = 0, resamples: int = 1000) -> dict:
    """p50/p90/p99, mean, std, a t-based 95% CI of the mean and a bootstrap 95% CI of the median."""
    values = sorted(latencies_ms)
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = t95(n - 1) * std / math.sqrt(n) if n > 1 else float("inf")
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return {
        "n": n,
        "min": values[0],
        "max": values[-1],
        "mean": mean,
        "std": std,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean_ci95": [mean - half, mean + half],
        "median_ci95": [percentile(medians, 2.5), percentile(medians, 97.5)],
    }


# ------------------------------------------------------------------------------------------------ runtimes
def _load_inputs(path: str):
    try:
        import numpy as np
    except ImportError as exc:
        raise MeasureError(f"{sys.executable} has no numpy (needed to read the inputs): pip install numpy") from exc
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise MeasureError(f"cannot read inputs {path}: {exc}") from exc
    if "__order__" in arrays:
        order = [str(x) for x in arrays.pop("__order__")]
    elif arrays and all(re.fullmatch(r"input_\d+", k) for k in arrays):
        order = sorted(arrays, key=lambda k: int(k.split("_")[1]))
    else:
        order = list(arrays)  # np.savez keeps the order the arrays were given in
    if not order:
        raise MeasureError(f"inputs {path} holds no arrays")
    missing = [k for k in order if k not in arrays]
    if missing:
        raise MeasureError(f"inputs {path}: __order__ names missing arrays {missing}")
    return [arrays[k] for k in order], order


def _load_onnxruntime(artifact: str, threads: int, given_names: list[str]):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MeasureError(f"{sys.executable} has no onnxruntime: pip install onnxruntime") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(artifact, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise MeasureError(f"onnxruntime cannot load {artifact}: {str(exc).splitlines()[0]}") from exc
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(given_names):
        raise MeasureError(f"{artifact} takes {len(names)} inputs {names}, the inputs file has {len(given_names)}")
    if sorted(names) == sorted(given_names):  # named the same: feed by name, whatever the order
        index = [given_names.index(n) for n in names]
    else:
        index = list(range(len(names)))

    def run(inputs):
        return session.run(None, {n: inputs[i] for n, i in zip(names, index)})

    return run, {"runtime_version": ort.__version__, "input_names": names}


def _load_executorch(artifact: str, threads: int, given_names: list[str]):
    try:
        import torch
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise MeasureError(f"{sys.executable} has no ExecuTorch runtime: pip install executorch") from exc
    torch.set_num_threads(threads)
    try:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)  # XNNPACK's own pool; torch.set_num_threads does not reach it
    except Exception:  # noqa: BLE001 - older runtimes have no resettable pool; recorded as threads_pool=None
        pass
    try:
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401 (LLM .pte files need these kernels)
    except Exception:  # noqa: BLE001
        pass
    try:
        method = Runtime.get().load_program(artifact).load_method("forward")
    except Exception as exc:  # noqa: BLE001 - the runtime raises bare RuntimeErrors
        raise MeasureError(f"the ExecuTorch runtime cannot load {artifact}: {str(exc).splitlines()[0]}") from exc

    def run(inputs):
        return method.execute([torch.from_numpy(x) for x in inputs])

    try:
        import executorch

        version = getattr(executorch, "__version__", "unknown")
    except Exception:  # noqa: BLE001
        version = "unknown"
    return run, {"runtime_version": version}


LOADERS = {"onnxruntime": _load_onnxruntime, "executorch": _load_executorch}
LOAD_BASIS = {"onnxruntime": "InferenceSession creation (file to ready session)",
              "executorch": "load_program + load_method (file to ready method)"}


def _import_runtime(runtime: str) -> None:
    if runtime == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import torch  # noqa: F401  (the pip runtime's pybindings need libtorch loaded first)
        from executorch.runtime import Runtime  # noqa: F401


def _reset_peak() -> bool:
    """Reset this process's resident high-water mark to the current RSS (Linux clear_refs 5); False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_for_budget(runtime: str, process_peak_mb: float, artifact_peak_mb: float | None,
                      torch_loaded: bool) -> dict:
    """The number a peak_memory_mb budget may be judged by, or None with the reason.

    A budget means the peak RSS of the process that runs the model on the device. onnxruntime's process here is
    that process (interpreter, numpy, onnxruntime, the model). The pip ExecuTorch runtime cannot load without torch
    (hundreds of MB a device's executor_runner never maps), so its process peak is not that number: it is reported
    with the artifact's own share, and the budget is left to a device runner (adb: the binary's own peak RSS)."""
    if runtime == "executorch" and torch_loaded:
        share = "unknown" if artifact_peak_mb is None else f"{artifact_peak_mb:.1f} MB"
        return {"value": None, "basis": f"not measured: the pip ExecuTorch runtime loads torch into the process "
                                        f"(process peak {process_peak_mb:.0f} MB); the artifact's own share is "
                                        f"{share}; a device runner measures the real number"}
    return {"value": process_peak_mb, "basis": f"peak RSS of the process that ran the model ({runtime}, "
                                               "without torch)" if not torch_loaded else
            f"peak RSS of the process that ran the model ({runtime}; torch was loaded)"}


RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "executorch": "executorch"}


def _require(modules: list[str]) -> None:
    """Every missing module at once, so a board is fixed with one pip command."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MeasureError(f"{sys.executable} (Python {platform.python_version()}) lacks {', '.join(missing)}: "
                           f"pip install {' '.join(missing)}")


# ------------------------------------------------------------------------------------------------ measure
def measure(artifact: str, runtime: str, inputs_path: str, warmup: int, runs: int, threads: int,
            cores: list[int] | None) -> dict:
    """Load once, warm up, time `runs` calls; memory is sampled before loading so the model's share is visible."""
    if runtime not in LOADERS:
        raise MeasureError(f"unknown runtime {runtime!r}; allowed: {', '.join(LOADERS)}")
    if not os.path.isfile(artifact):
        raise MeasureError(f"artifact not found: {artifact}")
    affinity, pin_note = None, None
    if cores:
        if not hasattr(os, "sched_setaffinity"):
            raise MeasureError("cores were given but this OS cannot pin threads (no sched_setaffinity)")
        # A profile names the target's cores (a phone's big cores 4-7); a host with fewer CPUs, such as a 2-core CI
        # box running the local runner, pins to the cores it has of those, or runs unpinned and says so.
        usable = sorted(set(cores) & os.sched_getaffinity(0))
        if usable:
            try:
                os.sched_setaffinity(0, set(usable))
            except OSError as exc:
                raise MeasureError(f"cannot pin to cores {usable}: {exc}") from exc
            if usable != sorted(cores):
                pin_note = f"cores {sorted(set(cores) - set(usable))} not on this host; pinned to {usable}"
        else:
            pin_note = f"none of cores {cores} exist on this host ({os.cpu_count()} CPUs); ran unpinned"
    if hasattr(os, "sched_getaffinity"):
        affinity = sorted(os.sched_getaffinity(0))
    # Import the runtime first and time it apart: the interpreter's import cost (5-6 s for executorch.runtime, which
    # pulls in torch) is not what a device's C++ runner pays; file-to-ready load and the first run are.
    _require(["numpy", RUNTIME_MODULES[runtime]])
    t0 = time.perf_counter()
    _import_runtime(runtime)
    import_ms = (time.perf_counter() - t0) * 1000
    inputs, order = _load_inputs(inputs_path)
    loader = LOADERS[runtime]
    hwm_reset = _reset_peak()  # from here VmHWM counts what loading and running the artifact adds to the runtime
    before = memory_snapshot()
    t0 = time.perf_counter()
    run, info = loader(artifact, threads, order)
    load_ms = (time.perf_counter() - t0) * 1000
    after_load = memory_snapshot()
    t0 = time.perf_counter()
    run(inputs)  # the cold first call (allocations, packing): reported on its own, counted as the first warm-up
    first_run_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    for _ in range(max(0, warmup - 1)):
        run(inputs)
    warmup_ms = (time.perf_counter() - t0) * 1000 + first_run_ms
    latencies = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(inputs)
        latencies.append((time.perf_counter() - t0) * 1000)
    end = memory_snapshot()
    artifact_peak = round(end["peak_rss_mb"] - (before["rss_mb"] or 0.0), 3) if hwm_reset else None
    result = {
        "ok": True,
        "schema": SCHEMA_VERSION,
        "artifact": os.path.basename(artifact),
        "runtime": runtime,
        "runtime_version": info.get("runtime_version"),
        "inputs": {name: list(arr.shape) for name, arr in zip(order, inputs)},
        "warmup": warmup,
        "runs": runs,
        "threads": threads,
        "os_threads": _proc_status_kb("Threads"),
        "cores": cores,
        "affinity": affinity,
        "pin_note": pin_note,
        "import_ms": import_ms,
        "load_ms": load_ms,
        "load_basis": LOAD_BASIS[runtime],
        "first_run_ms": first_run_ms,
        "warmup_total_ms": warmup_ms,
        "latency_ms": {**summarize(latencies), "samples": latencies},
        "memory": {"before_load": before, "after_load": after_load, "end": end},
        "peak_rss_mb": end["peak_rss_mb"],
        "model_peak_mb": round(end["peak_rss_mb"] - before["peak_rss_mb"], 3),
        "artifact_peak_mb": artifact_peak,
        "process_imports_torch": "torch" in sys.modules,
        "memory_for_budget": memory_for_budget(runtime, end["peak_rss_mb"], artifact_peak, "torch" in sys.modules),
        "host": {"hostname": socket.gethostname(), "machine": platform.machine(), "system": platform.system(),
                 "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    if result["os_threads"] is not None:
        result["os_threads"] = int(result["os_threads"])
    return result


def _parse_cores(text: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError as exc:
        raise MeasureError(f"--cores must be comma-separated integers, got {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--runtime", required=True, choices=sorted(LOADERS))
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cores", default="")
    parser.add_argument("--out", default="", help="also write the JSON here (stdout stays the primary channel)")
    args = parser.parse_args(argv)
    try:
        if args.runs < 1 or args.warmup < 0 or args.threads < 1:
            raise MeasureError("--runs and --threads must be >= 1, --warmup >= 0")
        result = measure(args.artifact, args.runtime, args.inputs, args.warmup, args.runs, args.threads,
                         _parse_cores(args.cores))
        code = 0
    except MeasureError as exc:
        result, code = {"ok": False, "error": str(exc)}, EXIT_MEASURE_FAILED
    text = json.dumps(result)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, args.out)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
