"""report.md: what a person reads after a run -- artifacts against budgets, parity, decisions, timings, plots."""

from __future__ import annotations

from pathlib import Path

from edgekd.context import Context

from .manifest import all_verdicts, overall_verdict


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fp32_bytes(ctx: Context, fmt: str) -> int | None:
    for a in ctx.artifacts:
        if a.format == fmt and a.precision == "fp32":
            return a.bytes
    return None


def bench_summary(artifact) -> dict:
    """The benchmark result of the profile's runner (or the first runner) in a flat shape for tables."""
    bench = artifact.bench or {}
    if "latency_ms" in bench:
        return bench
    for value in bench.values():
        if isinstance(value, dict) and "latency_ms" in value:
            return value
    return {}


def artifact_rows(ctx: Context) -> list[dict]:
    rows = []
    for a in ctx.artifacts:
        base = fp32_bytes(ctx, a.format)
        b = bench_summary(a)
        lat = b.get("latency_ms", {})
        rows.append({
            "artifact": a.name, "runtime": a.runtime, "precision": a.precision + (" (ref)" if a.is_reference else ""),
            "MB": _mb(a.bytes), "vs fp32": f"{a.bytes / base:.0%}" if base else "-",
            "top1 agree": _fmt(a.parity.get("top1_agreement")), "cosine": _fmt(a.parity.get("cosine_mean")),
            "accuracy": _fmt(a.parity.get("accuracy")), "p50 ms": _fmt(lat.get("p50"), 3),
            "p90 ms": _fmt(lat.get("p90"), 3), "peak MB": _fmt(b.get("peak_rss_mb"), 4),
            "verdict": "fail" if any(v["status"] == "fail" for v in a.verdicts) else (
                "pass" if a.verdicts else "-"),
        })
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "_none_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r.get(h, "-")) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render(ctx: Context, root: Path) -> str:
    verdicts = all_verdicts(ctx)
    m = ctx.metrics
    parts = [f"# edgekd report: {ctx.recipe.name} on {ctx.profile.name}\n",
             f"**Verdict: {overall_verdict(verdicts).upper()}**  \n"
             f"Model: {m.get('model', {}).get('name')} ({m.get('model', {}).get('parameters', 0) / 1e6:.2f} M params, "
             f"{m.get('model', {}).get('task')}), source {m.get('model', {}).get('source')}  \n"
             f"Profile: {ctx.profile.name} ({ctx.profile.backend}, {ctx.profile.threads} threads)  \n"
             f"Data: {m.get('data', {}).get('source')}: calibration {m.get('data', {}).get('calibration')} samples "
             f"({m.get('data', {}).get('calibration_from')}), held-out {m.get('data', {}).get('eval')} samples "
             f"({m.get('data', {}).get('eval_from')})\n",
             "## Artifacts\n", table(artifact_rows(ctx)),
             "\nParity is measured in each artifact's own runtime (ExecuTorch runtime, onnxruntime) against the fp32 "
             "PyTorch student on the held-out samples. Latency/memory come from the bench runner named in the "
             "manifest.\n",
             "## Budgets\n"]
    rows = [{"artifact": v["artifact"], "metric": v["metric"], "value": _fmt(v.get("value")),
             "limit": _fmt(v.get("limit")), "margin": _fmt(v.get("margin")), "status": v["status"]}
            for v in verdicts]
    parts.append(table(rows))
    unchecked = [k for k, v in ctx.budgets.model_dump().items() if v is None]
    if unchecked:
        parts.append(f"\nBudgets the profile does not set (not checked): {', '.join(unchecked)}\n")
    if "verify" in m and "pytorch_quantized_vs_fp32" in m["verify"]:
        q = m["verify"]["pytorch_quantized_vs_fp32"]
        parts.append(f"\nPyTorch converted (quantized) model vs fp32: top-1 agreement {_fmt(q.get('top1_agreement'))}, "
                     f"cosine {_fmt(q.get('cosine_mean'))}.\n")
    parts.append(side_by_side(ctx))
    parts.append("\n## Decisions (nothing skipped silently)\n")
    parts.append(table([{"stage": d.stage, "subject": d.subject, "action": d.action, "reason": d.reason}
                        for d in ctx.decisions]))
    parts.append("\n## Stage timings\n")
    parts.append(table([{"stage": k, "seconds": f"{v:.1f}"} for k, v in ctx.timings.items()]))
    for key in ("fuse", "ptq"):
        if key in m:
            parts.append(f"\n**{key}**: " + ", ".join(f"{k}={_fmt(v)}" for k, v in m[key].items()
                                                    if not isinstance(v, (list, dict))) + "\n")
    if ctx.plots:
        parts.append("\n## Plots\n")
        for name, path in ctx.plots.items():
            parts.append(f"![{name}]({Path(path).name})\n")
    extra = [render_extra(ctx)]
    return "\n".join(parts + [e for e in extra if e])


def side_by_side(ctx: Context) -> str:
    """After QAT on labelled data: fp32, PTQ and QAT+KD accuracy per runtime in one table (issue 3's question:
    did training with the teacher's soft targets beat plain PTQ?). Empty otherwise."""
    if "qat" not in ctx.metrics or "fp32_pytorch_accuracy" not in ctx.metrics.get("verify", {}):
        return ""
    names = {"fp32": "fp32 student", "int8-ptq": "int8 PTQ (same student, calibrated)", "int8": "int8 QAT+KD"}
    by_format: dict[str, dict[str, float]] = {}
    for a in ctx.artifacts:
        accuracy = (a.parity or {}).get("accuracy")
        if accuracy is not None and a.precision in names:
            by_format.setdefault(f"{a.format} ({a.runtime})", {})[a.precision] = accuracy
    fp32 = ctx.metrics["verify"]["fp32_pytorch_accuracy"]
    rows = []
    for precision, label in names.items():
        row = {"model": label}
        for fmt, accs in by_format.items():
            value = accs.get(precision)
            row[fmt] = "-" if value is None else f"{value:.4f} ({100 * (value - fp32):+.2f} pts)"
        rows.append(row)
    rows.append(_paired_row(ctx))
    samples = ctx.metrics["verify"].get("samples")
    teacher = ctx.metrics["verify"].get("teacher_pytorch_accuracy")
    teacher_line = "" if teacher is None else f" Teacher ({ctx.teacher.name}, fp32 PyTorch): {teacher:.4f}."
    return (f"\n## fp32 vs PTQ vs QAT+KD (accuracy on {samples} held-out labelled samples, each in its runtime)\n"
            + table(rows) + f"\nfp32 PyTorch student: {fp32:.4f}; points are accuracy points against it."
            + teacher_line + " QAT+KD vs PTQ is McNemar's exact test on the same samples (edgekd/stats.py): "
            "\"better\" or \"worse\" only at p < 0.01, otherwise a tie; the counts are the samples only one of the "
            "two gets right.\n")


def _paired_row(ctx: Context) -> dict:
    """The QAT+KD vs PTQ verdict per runtime: who wins the samples they disagree on, and whether that is noise."""
    row = {"model": "QAT+KD vs PTQ (paired)"}
    for a in ctx.artifacts:
        paired = (a.parity or {}).get("paired_vs_ptq")
        if paired is not None and a.precision == "int8":
            row[f"{a.format} ({a.runtime})"] = (f"{paired['verdict']} (+{paired['candidate_only']} / "
                                                f"-{paired['baseline_only']}, p={paired['p_value']:.3g})")
    return row


def render_extra(ctx: Context) -> str:
    """Sections other areas contribute through ctx.metrics["report_sections"]: {title: markdown}."""
    sections = ctx.metrics.get("report_sections", {})
    return "\n".join(f"\n## {title}\n{body}" for title, body in sections.items())
