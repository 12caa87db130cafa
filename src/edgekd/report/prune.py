"""The report's "Pruning" section, rendered from the manifest (metrics.prune and the artifacts' parity).

Accuracy at each step, fp32 unpruned -> pruned -> pruned + KD -> each artifact in its own runtime, every step
paired against the unpruned student on the same held-out samples (src/edgekd/stats.py); then MACs, parameters,
artifact bytes, and the channels of every Conv/Linear before and after the cut (src/edgekd/stages/prune.py).
"""

from __future__ import annotations

from .comparison import table


def _table(rows: list[dict]) -> str:
    return table(rows, empty="", missing="")


def _paired(p: dict | None) -> str:
    if not p:
        return "-"
    interval = f"99% CI {100 * p['ci_low']:+.2f}..{100 * p['ci_high']:+.2f}"
    return (f"{p['verdict']} ({100 * p['difference']:+.2f} pts, {interval}; +{p['candidate_only']} / "
            f"-{p['baseline_only']}, p={p['p_value']:.3g})")


def step_rows(m: dict) -> list[dict]:
    """One row per step: the PyTorch steps of the prune stage, then every artifact verify measured."""
    prune = (m.get("metrics") or {}).get("prune") or {}
    rows = [{"step": s["step"], "where": "PyTorch", "accuracy": f"{s['accuracy']:.4f}", "bytes": "-",
             "vs unpruned (paired)": "baseline" if s["step"] == "fp32 unpruned" else _paired(s["paired_vs_unpruned"])}
            for s in prune.get("steps") or []]
    trained = "pruned + KD" if any(s["step"] == "pruned + KD" for s in prune.get("steps") or []) else "pruned"
    order = {"fp32": 0, "int8-ptq": 1, "int8": 2}
    for a in sorted(m.get("artifacts") or [], key=lambda a: (order.get(a.get("precision"), 3), a.get("format", ""))):
        parity = a.get("parity") or {}
        paired = parity.get("paired_vs_unpruned")
        if paired is None:
            continue
        # on the unpruned student's basis (labels, or agreement with its top-1): its accuracy plus the paired difference
        accuracy = prune["steps"][0]["accuracy"] + paired["difference"]
        rows.append({"step": f"{trained}, {a['precision']} artifact", "where": f"{a['format']} ({a['runtime']})",
                     "accuracy": f"{accuracy:.4f}", "bytes": f"{a.get('bytes', 0):,}",
                     "vs unpruned (paired)": _paired(parity.get("paired_vs_unpruned"))})
    return rows


def prune_section(m: dict) -> str:
    """Markdown for report.md; empty when the prune stage did not run."""
    prune = (m.get("metrics") or {}).get("prune")
    if not prune:
        return ""
    target = ", ".join(f"{k} {v:.0%}" for k, v in prune["target"].items())
    basis = (prune.get("steps") or [{}])[0].get("basis", "")
    changed = [r for r in prune["layers"] if (r["in_before"], r["out_before"]) != (r["in_after"], r["out_after"])]
    layers = [{"layer": r["layer"], "type": r["type"], "in": f"{r['in_before']} -> {r['in_after']}",
               "out": f"{r['out_before']} -> {r['out_after']}"} for r in prune["layers"]]
    return (
        "\n## Pruning\n"
        f"Target: remove {target}; importance {prune['importance']}, "
        f"{'global' if prune['global_pruning'] else 'the same fraction per layer'} (channel ratio "
        f"{prune['ratio']:.3g}, at most {prune['max_ratio']} of any layer). Kept whole: "
        f"{', '.join(prune['ignored']) or 'nothing'}.\n\n"
        + _table([{"": "MACs", "before": f"{prune['macs_before']:,}", "after": f"{prune['macs_after']:,}",
                   "removed": f"{prune['macs_reduction']:.1%}"},
                  {"": "parameters", "before": f"{prune['params_before']:,}", "after": f"{prune['params_after']:,}",
                   "removed": f"{prune['params_reduction']:.1%}"}])
        + f"\nAccuracy at each step ({basis}, {prune['samples']} held-out samples); \"vs unpruned\" is McNemar's "
        "exact test and the paired 99% interval of the difference against the unpruned fp32 student on the same "
        "samples: \"better\"/\"worse\" only at p < 0.01, otherwise a tie.\n\n"
        + _table(step_rows(m))
        + f"\nChannels per Conv/Linear layer (in -> out; {len(changed)} of {len(layers)} layers changed):\n\n"
        + _table(layers))
