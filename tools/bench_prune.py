#!/usr/bin/env python3
"""Pruned vs unpruned artifacts of one student, timed interleaved in their own runtimes, with sizes and accuracy.

Takes two `edgekd export` output folders (the unpruned recipe's and the prune recipe's) and times every fp32 and
int8 artifact (.pte in the ExecuTorch runtime, ONNX in onnxruntime) in a fresh child process each time, in rounds
whose order rotates (edgekd.bench.compare, as `make bench` does: drift lands on every candidate alike). Prints and
writes a markdown table (bytes, p50, speedup = unpruned p50 / pruned p50 of the same format and precision, the
accuracy each manifest measured) and a plot of accuracy vs latency.

    .venv/bin/python tools/bench_prune.py --unpruned out/fashion_cnn_distill_qat_int8 \
        --pruned out/fashion_cnn_prune_kd_int8 --out bench/results/prune_fashion
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgekd.bench.compare import (Candidate, child_measure, machine_info, machine_line, pool,  # noqa: E402
                                  run_interleaved)



def candidates(folder: Path, which: str) -> list[Candidate]:
    manifest = json.loads((folder / "manifest.json").read_text())
    out = []
    for a in manifest["artifacts"]:
        if (a.get("details") or {}).get("role") == "baseline" or a["runtime"] not in ("executorch", "onnxruntime"):
            continue
        parity = a.get("parity") or {}
        cand = Candidate(key=f"{which}/{a['format']}-{a['precision']}", model=which, label=a["name"],
                         runtime=a["runtime"], path=folder / a["path"], bytes=a["bytes"],
                         inputs={1: folder / "inputs.npz"}, parity=parity)
        out.append(cand)
    return out


def accuracy(parity: dict) -> float | None:
    return parity.get("accuracy", parity.get("top1_agreement"))


def table(cands: list[Candidate], pooled: dict) -> tuple[str, list[dict]]:
    rows = []
    for cand in cands:
        if not cand.key.startswith("pruned/"):
            continue
        twin = next((c for c in cands if c.key == cand.key.replace("pruned/", "unpruned/", 1)), None)
        if twin is None:
            continue
        new, old = pooled[cand.key], pooled[twin.key]
        p50_new = new["latency_ms"]["p50"] if new.get("ok") else None
        p50_old = old["latency_ms"]["p50"] if old.get("ok") else None
        rows.append({"artifact": cand.key.split("/", 1)[1], "bytes unpruned": twin.bytes, "bytes pruned": cand.bytes,
                     "p50 unpruned ms": p50_old, "p50 pruned ms": p50_new,
                     "speedup": (p50_old / p50_new) if p50_new and p50_old else None,
                     "accuracy unpruned": accuracy(twin.parity or {}), "accuracy pruned": accuracy(cand.parity or {})})
    head = ("| artifact | bytes unpruned -> pruned | p50 ms unpruned -> pruned | speedup | "
            "accuracy (labels) or top-1 agreement with its own fp32, unpruned -> pruned |")
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        f = (lambda v, d=3: "-" if v is None else f"{v:.{d}f}")
        lines.append(f"| {r['artifact']} | {r['bytes unpruned']:,} -> {r['bytes pruned']:,} | "
                     f"{f(r['p50 unpruned ms'])} -> {f(r['p50 pruned ms'])} | {f(r['speedup'], 2)}x | "
                     f"{f(r['accuracy unpruned'], 4)} -> {f(r['accuracy pruned'], 4)} |")
    return "\n".join(lines) + "\n", rows


def plot(rows: list[dict], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if None in (r["p50 unpruned ms"], r["p50 pruned ms"], r["accuracy unpruned"], r["accuracy pruned"]):
            continue
        xs, ys = [r["p50 unpruned ms"], r["p50 pruned ms"]], [r["accuracy unpruned"], r["accuracy pruned"]]
        ax.plot(xs, ys, "-", color="0.7")
        ax.scatter(xs[:1], ys[:1], marker="o")
        ax.scatter(xs[1:], ys[1:], marker="^")
        ax.annotate(r["artifact"], (xs[1], ys[1]), fontsize=8)
    ax.set_xlabel("p50 latency (ms, batch 1)  o unpruned  ^ pruned")
    ax.set_ylabel("accuracy / top-1 agreement")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unpruned", type=Path, required=True)
    parser.add_argument("--pruned", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md, OUT.json and OUT.png")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=40, help="timed runs per artifact over all rounds")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cands = candidates(args.unpruned, "unpruned") + candidates(args.pruned, "pruned")
    results = run_interleaved(cands, [1], child_measure(args.threads), rounds=args.rounds, runs=args.runs,
                              warmup=args.warmup, log=lambda s: print(s, file=sys.stderr, flush=True))
    pooled = {key: pool(rounds) for (key, _), rounds in results.items()}
    text, rows = table(cands, pooled)
    info = machine_info()
    header = (f"{args.pruned.name} vs {args.unpruned.name}: {machine_line(info)}; {args.threads} thread(s), batch 1, "
              f"{args.rounds} interleaved rounds, {args.runs} timed runs per artifact\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(header + text)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "pooled": pooled, "machine": info}, indent=1))
    plot(rows, args.out.with_suffix(".png"), args.pruned.name)
    print(header + text)


if __name__ == "__main__":
    main()
