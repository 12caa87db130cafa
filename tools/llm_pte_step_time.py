#!/usr/bin/env python3
"""Decode-step time of LLM .pte files, in one process, interleaved: the steadiest tok/s comparison on a shared host.

tools/bench_llm_peer.py times each file in a fresh process (32 decode steps, best of 3), which is what a user sees
but swings 10-20% per round here; ETDump (edgekd/runtime/etdump.py) says where a step goes but adds per-event cost
that differs between programs. This loads every file once, then per round (order alternating) prefills 64 tokens and
times 64 single-token steps at positions 64..127 with `Method.execute`, keeping the round's median step.

    PYTHONPATH=src .venv/bin/python tools/llm_pte_step_time.py OUT.json A.pte B.pte ... [--threads 1,2] [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("pte", type=Path, nargs="+")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args(argv)
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    from edgekd.bench.compare import machine_info
    from edgekd.llm.decode import pte_session

    results: dict = {"machine": machine_info(), "rounds": args.rounds, "step_ms": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        _unsafe_reset_threadpool(threads)
        sessions = {p.name: pte_session(p, 256) for p in args.pte}
        medians: dict[str, list[float]] = {name: [] for name in sessions}
        for r in range(args.rounds):
            for name in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
                session = sessions[name]
                session.reset()
                session.feed(list(range(1, 65)))
                steps = []
                for _ in range(64):
                    t0 = time.perf_counter()
                    session.feed([1000])
                    steps.append(time.perf_counter() - t0)
                medians[name].append(1000 * statistics.median(steps))
        results["step_ms"][threads] = medians
        for name, values in medians.items():
            print(threads, name, " ".join(f"{v:.2f}" for v in values), f"median {statistics.median(values):.2f} ms",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
