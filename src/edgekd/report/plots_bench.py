"""Benchmark plots: latency distribution per artifact against the p50/p90 budget lines, size per artifact vs budget.

A number in a table says whether a budget holds; the distribution says how much it can be trusted (a p90 near the
line with a long tail is a different risk from a tight one). Matplotlib with the Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.config.schema import Budgets
from edgekd.report.atomic import atomic_path

MB = 1_000_000


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def latency_plot(rows: list[dict], budgets: Budgets, path: Path, title: str = "") -> Path | None:
    """Box plot plus jittered samples per artifact, with horizontal p50 / p90 budget lines."""
    rows = [r for r in rows if r.get("samples")]
    if not rows:
        return None
    plt = pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(rows) + 2), 4))
    data = [r["samples"] for r in rows]
    ax.boxplot(data, showfliers=False, whis=(5, 95))
    rng = np.random.default_rng(0)
    for i, samples in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(samples)), samples, s=6, alpha=0.5, color="tab:blue")
        p50, p90 = np.percentile(samples, [50, 90])
        ax.annotate(f"p50 {p50:.3g}\np90 {p90:.3g}", (i + 0.22, p90), fontsize=7)
    if budgets.latency_p50_ms is not None:
        ax.axhline(budgets.latency_p50_ms, color="tab:orange", ls="--", label=f"p50 budget {budgets.latency_p50_ms:g} ms")
    if budgets.latency_p90_ms is not None:
        ax.axhline(budgets.latency_p90_ms, color="tab:red", ls="--", label=f"p90 budget {budgets.latency_p90_ms:g} ms")
    ax.set_xticks(range(1, len(rows) + 1), [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("latency per call (ms)")
    ax.set_title(title or "latency distribution (box: quartiles, whiskers: p5-p95)")
    if budgets.latency_p50_ms is not None or budgets.latency_p90_ms is not None:
        ax.legend(fontsize=8)
    path = save_png(fig, Path(path))
    plt.close(fig)
    return path


def size_plot(rows: list[dict], budgets: Budgets, path: Path, title: str = "") -> Path | None:
    """One bar per artifact (MB), the artifact_size_mb budget as a line; bars over it are red."""
    rows = [r for r in rows if r.get("bytes")]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(rows) + 2), 3.5))
    limit = budgets.artifact_size_mb
    sizes = [r["bytes"] / MB for r in rows]
    colours = ["tab:red" if limit is not None and s > limit and not r.get("is_reference") else
               ("tab:gray" if r.get("is_reference") else "tab:green") for s, r in zip(sizes, rows)]
    bars = ax.bar(range(len(rows)), sizes, color=colours)
    ax.bar_label(bars, [f"{s:.3g}" for s in sizes], fontsize=7)
    if limit is not None:
        ax.axhline(limit, color="tab:red", ls="--", label=f"size budget {limit:g} MB")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(rows)), [r["name"] + (" (ref)" if r.get("is_reference") else "") for r in rows],
                  rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("artifact size (MB)")
    ax.set_title(title or "artifact size vs budget")
    path = save_png(fig, Path(path))
    plt.close(fig)
    return path


def plot_bench(rows: list[dict], budgets: Budgets, folder: Path, runner: str) -> dict[str, Path]:
    """Both plots into folder/plots/; returns {plot name: path} for the manifest and the report."""
    out = {}
    lat = latency_plot(rows, budgets, Path(folder) / "plots" / f"latency_{runner}.png",
                       title=f"latency on the {runner} runner")
    if lat:
        out[f"latency_{runner}"] = lat
    size = size_plot(rows, budgets, Path(folder) / "plots" / "size.png")
    if size:
        out["size"] = size
    return out
