"""Benchmark one LLM artifact in a fresh process: load time, prefill/decode tokens/s and peak memory.

A separate process is the only honest way to get an artifact's peak memory: in-process, the fp32 PyTorch model and
the other artifacts would be counted too. The interpreter plus runtime libraries are measured first (baseline) and
the peak high-water mark is reset after that (Linux /proc/self/clear_refs), so peak_memory_mb is what loading and
running the artifact adds. Prints one JSON object.

    python -m edgekd.llm.benchproc ARTIFACT --runtime executorch --prompt-ids 1,2,3 --new-tokens 32 --max-len 256
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact")
    parser.add_argument("--runtime", required=True, choices=["executorch", "onnxruntime"])
    parser.add_argument("--prompt-ids", required=True)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.runtime == "executorch":
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
        import executorch.kernels.quantized  # noqa: F401
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime  # noqa: F401

        _unsafe_reset_threadpool(args.threads)  # XNNPACK's own pool; torch.set_num_threads does not reach it
    else:
        import onnxruntime  # noqa: F401
    from edgekd.llm.decode import open_session, timed_generation

    baseline = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    t0 = time.perf_counter()
    session = open_session(Path(args.artifact), args.runtime, args.max_len, threads=args.threads)
    load_s = time.perf_counter() - t0
    prompt = [int(t) for t in args.prompt_ids.split(",")]
    timing = timed_generation(session, prompt, args.new_tokens, repeats=args.repeats)
    peak = _status_mb("VmHWM")
    result = {"load_s": load_s, **timing, "threads": args.threads, "baseline_rss_mb": baseline, "peak_rss_mb": peak,
              "peak_memory_mb": (peak - baseline) if (peak and baseline and hwm_reset) else peak,
              "peak_memory_basis": ("peak RSS minus the interpreter+runtime baseline" if hwm_reset
                                    else "whole-process peak RSS (VmHWM could not be reset)")}
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
