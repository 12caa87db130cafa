"""Time a recipe's student in PyTorch eager fp32 in this (fresh) process; print measure.py's JSON shape on stdout.

Why a child process of its own: the baseline row of `make bench` must be measured like every artifact (peak RSS of a
process that loaded only this model, load time from weights on disk), so it cannot share the parent's memory.

    python -m edgekd.bench.eager --recipe recipes/minilm/ptq_int8.yaml --profile x86-cpu --inputs in.npz --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Before torch loads its OpenMP runtime: with the default (active) wait policy, idle OpenMP workers spin, and on a
# shared 2-core box another busy process turns that into 10-20x slower eager runs (measured here on MiniLM at batch 1:
# ~750 ms active vs ~43 ms passive). onnxruntime and ExecuTorch use their own pools, so this only makes the baseline
# fair; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from edgekd.bench.measure import memory_snapshot, summarize


def measure_eager(recipe: str, profile: str, inputs_path: str, warmup: int, runs: int, threads: int) -> dict:
    import numpy as np
    import torch

    from edgekd.config.loading import load_recipe_and_profile
    from edgekd.models import load_bundle

    torch.set_num_threads(threads)
    with np.load(inputs_path, allow_pickle=False) as data:
        order = [str(x) for x in data["__order__"]] if "__order__" in data.files else list(data.files)
        inputs = tuple(torch.from_numpy(data[k]) for k in order)
    rec, _prof, _rf, _pf = load_recipe_and_profile(recipe, profile, [])
    before = memory_snapshot()
    t0 = time.perf_counter()
    module = load_bundle(rec.model, rec.data, key="model.source", base_dir=Path(recipe).parent).module.eval()
    load_ms = (time.perf_counter() - t0) * 1000
    latencies = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(*inputs)
        for _ in range(runs):
            t0 = time.perf_counter()
            module(*inputs)
            latencies.append((time.perf_counter() - t0) * 1000)
    end = memory_snapshot()
    return {"ok": True, "runtime": "torch", "runtime_version": torch.__version__, "threads": threads,
            "inputs": {n: list(t.shape) for n, t in zip(order, inputs)}, "warmup": warmup, "runs": runs,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_ms": load_ms, "latency_ms": {**summarize(latencies), "samples": latencies},
            "peak_rss_mb": end["peak_rss_mb"], "model_peak_mb": round(end["peak_rss_mb"] - before["peak_rss_mb"], 3),
            "pin_note": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        result, code = measure_eager(args.recipe, args.profile, args.inputs, args.warmup, args.runs, args.threads), 0
    except Exception as exc:  # noqa: BLE001 - reported as one JSON line like measure.py, never a traceback
        result, code = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}, 3
    sys.stdout.write(json.dumps(result) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
