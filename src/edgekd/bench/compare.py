"""Side-by-side comparison of candidates (edgekd's artifacts and what a user would pick instead) on one machine.

Why interleaved: a shared CPU drifts (other jobs, thermal, frequency). Timing candidate A for a minute and then B
for a minute lets that drift land on one of them. Instead every candidate gets a few timed runs per round, in a
round-robin whose starting point rotates each round, and the samples of all rounds are pooled; drift then lands on
all candidates alike.

This module holds the logic only (schedule, pooling, ratios, the markdown table, the machine line, the plot); the
measuring itself is a callable handed in, so the same code times real artifacts in child processes (tools/bench.py)
and is unit-tested on tiny real ONNX files.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekd.bench.measure import summarize

MB = 1_000_000


@dataclass
class Candidate:
    """One row of the table: a model in one runtime and format, and the inputs it can take per batch size."""

    key: str                       # unique id, e.g. "effnet/ort-fp32"
    model: str                     # table group, e.g. "EfficientNet-Lite0"
    label: str                     # what the row says, e.g. "onnxruntime fp32 (torch.onnx.export)"
    runtime: str                   # "torch", "onnxruntime", "executorch"
    path: Path | None = None       # artifact; None for PyTorch eager
    bytes: int | None = None
    inputs: dict[int, Path] = field(default_factory=dict)  # batch size -> .npz of real inputs
    unsupported: dict[int, str] = field(default_factory=dict)  # batch size -> why it cannot take it ("n/a")
    parity: dict | None = None     # from edgekd.parity.compare, or {"error": ...}
    baseline: bool = False         # PyTorch eager fp32: ratios are relative to it
    edgekd: bool = False           # produced by `edgekd export`
    fp32_key: str | None = None    # the fp32 artifact of the same runtime: the "speedup vs fp32" column's baseline
    pooled: bool = False           # token embeddings out: mean-pooled over the mask for parity (a HF ONNX export)


MeasureFn = Callable[[Candidate, int, int, int], dict]  # (candidate, batch, warmup, runs) -> measure.py's JSON


def schedule(candidates: list[Candidate], batch_sizes: list[int], rounds: int) -> list[tuple[int, int, Candidate]]:
    """(round, batch, candidate) in run order: per round, per batch, every candidate once, start rotated by round."""
    order = []
    n = len(candidates)
    for r in range(rounds):
        for batch in batch_sizes:
            for i in range(n):
                cand = candidates[(i + r) % n]
                if batch in cand.inputs:
                    order.append((r, batch, cand))
    return order


def split_runs(total: int, rounds: int) -> list[int]:
    """Spread `total` timed runs over `rounds` as evenly as possible (every round at least one)."""
    rounds = max(1, min(rounds, total))
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def run_interleaved(candidates: list[Candidate], batch_sizes: list[int], measure: MeasureFn, *, rounds: int,
                    runs: int, warmup: int, log: Callable[[str], None] = lambda s: None) -> dict:
    """Measure every (candidate, batch) in interleaved rounds; returns {(key, batch): [per-round result, ...]}."""
    per_round = split_runs(runs, rounds)
    results: dict[tuple[str, int], list[dict]] = {}
    plan = schedule(candidates, batch_sizes, len(per_round))
    for step, (r, batch, cand) in enumerate(plan, 1):
        res = measure(cand, batch, warmup, per_round[r])
        results.setdefault((cand.key, batch), []).append(res)
        lat = res.get("latency_ms", {}).get("p50") if res.get("ok") else None
        log(f"[{step}/{len(plan)}] round {r + 1} batch {batch} {cand.key}: "
            + (f"p50 {lat:.2f} ms" if lat is not None else f"FAILED {res.get('error', '')[:200]}"))
    return results


def pool(rounds: list[dict]) -> dict:
    """Pool the timed samples of all rounds; load time is the median over rounds, peak memory the maximum."""
    ok = [r for r in rounds if r.get("ok")]
    if not ok:
        return {"ok": False, "error": next((r.get("error") for r in rounds if r.get("error")), "no result")}
    samples = [s for r in ok for s in r["latency_ms"]["samples"]]
    first = [r["first_run_ms"] for r in ok if r.get("first_run_ms") is not None]
    imports = [r["import_ms"] for r in ok if r.get("import_ms") is not None]
    return {"ok": True, "latency_ms": summarize(samples), "load_ms": statistics.median(r["load_ms"] for r in ok),
            "first_run_ms": statistics.median(first) if first else None,
            "import_ms": statistics.median(imports) if imports else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ok), "rounds": len(ok), "failed_rounds": len(rounds) - len(ok),
            "pin_note": ok[0].get("pin_note")}


def build_rows(candidates: list[Candidate], results: dict, batch_sizes: list[int]) -> list[dict]:
    """One dict per candidate: pooled stats per batch and p50 ratio to the baseline of the same model and batch."""
    pooled = {k: pool(v) for k, v in results.items()}
    rows = []
    for cand in candidates:
        row = {"key": cand.key, "model": cand.model, "label": cand.label, "runtime": cand.runtime,
               "bytes": cand.bytes, "parity": cand.parity, "edgekd": cand.edgekd, "baseline": cand.baseline,
               "batches": {}}
        base = next((c for c in candidates if c.baseline and c.model == cand.model), None)
        for batch in batch_sizes:
            if batch not in cand.inputs:
                row["batches"][batch] = {"ok": False, "na": cand.unsupported.get(batch, "not measured")}
                continue
            stats = dict(pooled.get((cand.key, batch), {"ok": False, "error": "not measured"}))
            ref = pooled.get((base.key, batch)) if base else None
            if stats.get("ok") and ref and ref.get("ok"):
                stats["ratio"] = stats["latency_ms"]["p50"] / ref["latency_ms"]["p50"]
            fp32 = pooled.get((cand.fp32_key, batch)) if cand.fp32_key else None
            if stats.get("ok") and fp32 and fp32.get("ok"):
                stats["speedup_vs_fp32"] = fp32["latency_ms"]["p50"] / stats["latency_ms"]["p50"]
            row["batches"][batch] = stats
        row["fp32_key"] = cand.fp32_key
        firsts = [b["first_run_ms"] for b in row["batches"].values() if b.get("ok") and b.get("first_run_ms")]
        row["first_run_ms"] = statistics.median(firsts) if firsts else None
        loads = [b["load_ms"] for b in row["batches"].values() if b.get("ok")]
        peaks = [b["peak_rss_mb"] for b in row["batches"].values() if b.get("ok")]
        row["load_ms"] = statistics.median(loads) if loads else None
        row["peak_rss_mb"] = max(peaks) if peaks else None
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ rendering
def parity_text(parity: dict | None) -> str:
    if not parity:
        return "n/a"
    if "error" in parity:
        return f"error: {parity['error'][:60]}"
    if parity.get("reference"):
        return "reference"
    if "top1_agreement" in parity:
        return f"top-1 {parity['top1_agreement']:.3f} (n={parity['samples']})"
    return f"cos {parity['cosine_mean']:.4f} (min {parity['cosine_min']:.3f}, n={parity['samples']})"


def _cell(stats: dict, has_fp32: bool) -> tuple[str, str, str]:
    """(p50 / p90, speedup vs the fp32 artifact of the same runtime, ratio to eager fp32) for one batch size."""
    if stats.get("ok"):
        lat = stats["latency_ms"]
        ratio = f"{stats['ratio']:.2f}x" if "ratio" in stats else "n/a"
        speed = f"{stats['speedup_vs_fp32']:.2f}x" if "speedup_vs_fp32" in stats else ("n/a" if has_fp32 else "-")
        return f"{lat['p50']:.2f} / {lat['p90']:.2f}", speed, ratio
    if "na" in stats:
        return f"n/a ({stats['na']})", "n/a", "n/a"
    return f"failed: {str(stats.get('error', ''))[:80]}", "n/a", "n/a"


def markdown_table(rows: list[dict], batch_sizes: list[int]) -> str:
    """One row per candidate; each runtime's fp32 artifact is the row its quantized artifacts' speedup refers to."""
    head = ["model", "candidate", "MB", "load ms", "1st run ms"]
    for b in batch_sizes:
        head += [f"b{b} p50 / p90 ms", f"b{b} speedup vs fp32, same runtime", f"b{b} ratio to eager"]
    head += ["peak RSS MB", "parity to fp32"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        label = f"**{row['label']}**" if row["edgekd"] else row["label"]
        cells = [row["model"], label, f"{row['bytes'] / MB:.2f}" if row["bytes"] else "-",
                 f"{row['load_ms']:.0f}" if row["load_ms"] is not None else "-",
                 f"{row['first_run_ms']:.1f}" if row.get("first_run_ms") is not None else "-"]
        for b in batch_sizes:
            cells += list(_cell(row["batches"][b], bool(row.get("fp32_key"))))
        cells += [f"{row['peak_rss_mb']:.0f}" if row["peak_rss_mb"] is not None else "-", parity_text(row["parity"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info(cpuinfo: str | None = None) -> dict:
    """CPU model, logical cores and the ISA flags that decide int8 speed (VNNI makes s8/u8 dot products fast)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp"]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "isa": {f: f in flags for f in wanted}, "vnni": any("vnni" in f for f in flags),
            "python": platform.python_version(), "system": f"{platform.system()} {platform.release()}"}


def machine_line(info: dict) -> str:
    isa = ", ".join(f for f, present in info["isa"].items() if present) or "none of interest"
    return (f"{info['cpu']}, {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable), ISA: {isa}; "
            f"VNNI: {'yes' if info['vnni'] else 'no'}; {info['system']}, Python {info['python']}")


def plot(rows: list[dict], batch_sizes: list[int], path: Path) -> Path | None:
    """Horizontal p50 bars per candidate (one panel per model and batch), labelled with the ratio to eager fp32."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(models), len(batch_sizes), figsize=(6.5 * len(batch_sizes), 0.55 * len(rows) + 2.5),
                             squeeze=False)
    for i, model in enumerate(models):
        mrows = [r for r in rows if r["model"] == model]
        for j, b in enumerate(batch_sizes):
            ax = axes[i][j]
            labels = [r["label"] for r in mrows]
            values = [r["batches"][b]["latency_ms"]["p50"] if r["batches"][b].get("ok") else 0.0 for r in mrows]
            colors = ["tab:green" if r["edgekd"] else "tab:gray" if r["baseline"] else "tab:blue" for r in mrows]
            ax.barh(range(len(mrows)), values, color=colors)
            ax.set_yticks(range(len(mrows)), labels, fontsize=8)
            ax.invert_yaxis()
            for k, r in enumerate(mrows):
                stats = r["batches"][b]
                text = f" {stats['ratio']:.2f}x" if "ratio" in stats else " n/a"
                ax.text(values[k], k, text, va="center", fontsize=8)
            ax.set_title(f"{model}, batch {b}: p50 ms (ratio to eager fp32)", fontsize=9)
            ax.set_xlim(0, max(values + [1e-3]) * 1.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def child_measure(threads: int, timeout_s: int = 600, eager_args: dict[str, list[str]] | None = None) -> MeasureFn:
    """A MeasureFn that runs every measurement in a fresh interpreter: measure.py for artifacts, edgekd.bench.eager
    for PyTorch eager (eager_args[model] = ["--recipe", ..., "--profile", ...]). Failures come back as ok=False."""
    import json
    import subprocess
    import sys

    import edgekd.bench.measure as measure_module

    def run(cand: Candidate, batch: int, warmup: int, runs: int) -> dict:
        common = ["--inputs", str(cand.inputs[batch]), "--warmup", str(warmup), "--runs", str(runs),
                  "--threads", str(threads)]
        if cand.runtime == "torch":
            cmd = [sys.executable, "-m", "edgekd.bench.eager", *(eager_args or {}).get(cand.model, []), *common]
        else:
            cmd = [sys.executable, measure_module.__file__, "--artifact", str(cand.path), "--runtime", cand.runtime,
                   *common]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"did not finish in {timeout_s} s"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"ok": False, "error": f"exit {proc.returncode}: {tail[:300]}"}
        return json.loads(lines[-1])

    return run
