#!/usr/bin/env python3
"""Where a .pte spends its time, per operator, from the ExecuTorch runtime's own ETDump profile.

    .venv/bin/python tools/etdump_profile.py out/efficientnet_lite0_ptq_int8/*.pte --threads 2 --runs 20
    .venv/bin/python tools/etdump_profile.py model.pte --inputs out/<name>/inputs.npz --events

For each .pte: the partitions (delegate calls per run), then one row per operator kind (XNNPACK's operator names
inside a delegate, portable kernels outside): instances, summed p50 and share of the delegated time. `--events`
adds every event in execution order. The ETDump timestamps run on the same threads as the bench (`--threads`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def load_inputs(path: str | None, pte: Path) -> list:
    from edgekd.runtime.etdump import random_inputs

    if not path:
        return random_inputs(pte)
    import numpy as np
    import torch

    with np.load(path) as data:  # edgekd's out/<name>/inputs.npz: one array per input, batch first
        return [torch.from_numpy(np.ascontiguousarray(data[name][:1])) for name in data.files]


def report(pte: Path, args) -> str:
    from edgekd.runtime.etdump import partitions, profile_pte, summarize

    events = profile_pte(pte, load_inputs(args.inputs, pte), runs=args.runs, threads=args.threads)
    delegated = sum(e.p50_ms for e in events if e.delegated)
    lines = [f"## {pte}: {partitions(events)} partition(s), delegated ops {delegated:.2f} ms "
             f"(sum of per-op p50 over {args.runs} runs, {args.threads or 'default'} threads)", "",
             "| op | count | p50 ms (sum) | share |", "|---|---:|---:|---:|"]
    for row in summarize(events)[: args.top]:
        share = f"{100 * row['share']:.1f}%" if row["share"] is not None else "outside"
        lines.append(f"| {row['op']} | {row['count']} | {row['ms']:.3f} | {share} |")
    if args.events:
        lines += ["", "| # | event | p50 ms |", "|---:|---|---:|"]
        lines += [f"| {e.index} | {e.name} | {e.p50_ms:.3f} |" for e in events]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pte", nargs="+", type=Path)
    parser.add_argument("--inputs", help="an .npz of inputs (edgekd writes out/<name>/inputs.npz); default random")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="operator kinds to show")
    parser.add_argument("--events", action="store_true", help="also list every event in execution order")
    args = parser.parse_args(argv)
    for pte in args.pte:
        print(report(pte, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
