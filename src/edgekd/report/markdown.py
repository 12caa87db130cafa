"""report.md: what a person reads after a run -- artifacts against budgets, parity, decisions, timings, plots.

Rendered from the manifest (not from the live run), so `edgekd export`, `edgekd bench` and `edgekd bench import`
write the same report from the same record. Every artifact table puts each runtime's fp32 artifact first and its
quantized artifacts under it, with the speedup over that fp32 artifact measured in the same run on the same runner:
an int8 file that is smaller but slower than its fp32 sibling is visible at a glance.
"""

from __future__ import annotations

from pathlib import Path

from .comparison import artifact_rows, fmt_value, table
from .prune import prune_section


def grouped_decisions(decisions: list[dict]) -> list[dict]:
    """Decision rows for report.md with identical (stage, action, reason) grouped into one row: a count and the
    subjects listed once, in first-seen order (31 layers "quantized after the clamp" are one row, not 31).
    manifest.json keeps every decision as it was made."""
    groups: dict[tuple, list[str]] = {}
    for d in decisions:
        groups.setdefault((d.get("stage"), d.get("action"), d.get("reason")), []).append(str(d.get("subject")))
    return [{"stage": stage, "subject": compact_subjects(subjects), "count": len(subjects), "action": action,
             "reason": reason} for (stage, action, reason), subjects in groups.items()]


def compact_subjects(subjects: list[str]) -> str:
    """`features.0.conv, .1.conv, .2.conv`: each subject after the first drops the dotted prefix it shares with
    the one before, so a long run of layer names stays short and every name is still there."""
    out = []
    for prev, name in zip([None] + subjects, subjects):
        if prev is not None:
            a, b = prev.split("."), name.split(".")
            common = 0
            while common < min(len(a), len(b)) - 1 and a[common] == b[common]:
                common += 1
            if common:
                name = "." + ".".join(b[common:])
        out.append(name)
    return ", ".join(out)


def _budget_rows(manifest: dict) -> list[dict]:
    from .manifest import manifest_verdicts

    rows = []
    for v in manifest_verdicts(manifest):
        status = v["status"]
        if v.get("host_value") is not None:
            status += f" (host timing {fmt_value(v['host_value'])}, not judged)"
        rows.append({"artifact": v["artifact"], "metric": v["metric"], "value": fmt_value(v.get("value")),
                     "limit": fmt_value(v.get("limit")), "margin": fmt_value(v.get("margin")),
                     "measured on": v.get("measured_on") or "-", "status": status})
    return rows


def _bench_lines(manifest: dict) -> str:
    """Which runners measured, where, with how many threads (and why fewer than the profile asks)."""
    runs = dict((manifest.get("metrics") or {}).get("bench") or {})
    runs.update(manifest.get("bench_runs") or {})
    lines = []
    for name, info in runs.items():
        if not isinstance(info, dict):
            continue
        if info.get("status") == "not run":
            lines.append(f"- {name}: not run: {info.get('reason')}; {info.get('next', '')}".rstrip("; "))
            continue
        where = (info.get("device") or {}).get("measured_on", "")
        label = {"host": "host timings (this host is not the device: reported, not judged)",
                 "device": "on the device (judged)"}.get(where, "")
        threads = f", {info['threads']} threads" if isinstance(info.get("threads"), int) else ""
        note = f" ({info['threads_note']})" if info.get("threads_note") else ""
        machine = (info.get("device") or {}).get("description") or info.get("runner", "")
        lines.append(f"- {name}: {machine}, {label}{threads}{note}".replace(", ,", ","))
    return "\n".join(lines) + "\n" if lines else ""


def render_manifest(m: dict) -> str:
    recipe, profile = (m.get("recipe") or {}), (m.get("profile") or {})
    resolved = profile.get("resolved") or {}
    model, metrics = m.get("model") or {}, m.get("metrics") or {}
    data = metrics.get("data") or {}
    verdict = m.get("verdict", "no budgets checked")
    header = ("**Verdict: " + verdict.upper() + "**  \n"
              + "".join(f"Unverified: {line}  \n" for line in m.get("verdict_notes") or []))
    if model:
        header += (f"Model: {model.get('name')} ({(model.get('parameters') or 0) / 1e6:.2f} M params, "
                   f"{model.get('task')}), source {model.get('source')}  \n")
    header += f"Profile: {profile.get('name')} ({profile.get('backend')}, {resolved.get('threads')} threads)  \n"
    if data:
        header += (f"Data: {data.get('source')}: calibration {data.get('calibration')} samples "
                   f"({data.get('calibration_from')}), held-out {data.get('eval')} samples ({data.get('eval_from')})\n")
    parts = [f"# edgekd report: {recipe.get('name')} on {profile.get('name')}\n", header,
             "## Artifacts\n", table(m.get("comparison") or artifact_rows(m.get("artifacts") or [])),
             "\nParity is measured in each artifact's own runtime (ExecuTorch runtime, onnxruntime) against the fp32 "
             "PyTorch student on the held-out samples. Speedup vs fp32 = p50 of the fp32 artifact of the same runtime "
             "/ p50 of this artifact, one runner, one run. Load = file to ready (load_program + load_method, or "
             "InferenceSession creation), apart from the interpreter's import of the runtime; first run = the cold "
             "first call. \"measured on host\" rows are host timings: they say nothing about the device's budgets.\n",
             "## Benchmark runs\n", _bench_lines(m) or "_bench not run_\n",
             "## Budgets\n", table(_budget_rows(m))]
    if m.get("missing_budgets"):
        parts.append(f"\nBudgets set but not measured at all (bench not run): {', '.join(m['missing_budgets'])}\n")
    unchecked = [k for k, v in (m.get("budgets") or {}).items() if v is None]
    if unchecked:
        parts.append(f"\nBudgets the profile does not set (not checked): {', '.join(unchecked)}\n")
    verify = metrics.get("verify") or {}
    if "pytorch_quantized_vs_fp32" in verify:
        q = verify["pytorch_quantized_vs_fp32"]
        parts.append(f"\nPyTorch converted (quantized) model vs fp32: top-1 agreement {fmt_value(q.get('top1_agreement'))}, "
                     f"cosine {fmt_value(q.get('cosine_mean'))}.\n")
    parts.append(side_by_side(m))
    parts.append(prune_section(m))
    parts.append("\n## Decisions (nothing skipped silently)\n")
    parts.append("Identical decisions share one row with their count; a subject written `.1.conv` continues the "
                 "one before it (`features.0.conv, .1.conv` is features.0.conv and features.1.conv).\n")
    parts.append(table(grouped_decisions(m.get("decisions") or [])))
    parts.append("\n## Stage timings\n")
    parts.append(table([{"stage": k, "seconds": f"{v:.1f}"} for k, v in (m.get("timings_s") or {}).items()]))
    for key in ("fuse", "ptq"):
        if key in metrics:
            parts.append(f"\n**{key}**: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in metrics[key].items()
                                                    if not isinstance(v, (list, dict))) + "\n")
    if m.get("plots"):
        parts.append("\n## Plots\n")
        for name, path in m["plots"].items():
            parts.append(f"![{name}]({Path(path).as_posix()})\n")
    sections = m.get("report_sections") or {}  # task-specific sections (edgekd/llm/report.py): {title: markdown}
    return "\n".join(parts + [f"\n## {title}\n{body}" for title, body in sections.items()])


def side_by_side(m: dict) -> str:
    """After QAT on labelled data: fp32, PTQ and QAT+KD accuracy per runtime in one table (the question:
    did training with the teacher's soft targets beat plain PTQ?). Empty otherwise."""
    metrics = m.get("metrics") or {}
    verify = metrics.get("verify") or {}
    if "qat" not in metrics or "fp32_pytorch_accuracy" not in verify:
        return ""
    names = {"fp32": "fp32 student", "int8-ptq": "int8 PTQ (same student, calibrated)", "int8": "int8 QAT+KD"}
    by_format: dict[str, dict[str, float]] = {}
    for a in m.get("artifacts") or []:
        accuracy = (a.get("parity") or {}).get("accuracy")
        if accuracy is not None and a.get("precision") in names:
            by_format.setdefault(f"{a['format']} ({a['runtime']})", {})[a["precision"]] = accuracy
    fp32 = verify["fp32_pytorch_accuracy"]
    rows = []
    for precision, label in names.items():
        row = {"model": label}
        for fmt, accs in by_format.items():
            value = accs.get(precision)
            row[fmt] = "-" if value is None else f"{value:.4f} ({100 * (value - fp32):+.2f} pts)"
        rows.append(row)
    rows.append(_paired_row(m))
    teacher = verify.get("teacher_pytorch_accuracy")
    source = (((m.get("recipe") or {}).get("resolved") or {}).get("teacher") or {}).get("source")
    teacher_line = "" if teacher is None else f" Teacher ({source}, fp32 PyTorch): {teacher:.4f}."
    return (f"\n## fp32 vs PTQ vs QAT+KD (accuracy on {verify.get('samples')} held-out labelled samples, each in its "
            "runtime)\n" + table(rows) + f"\nfp32 PyTorch student: {fp32:.4f}; points are accuracy points against it."
            + teacher_line + " QAT+KD vs PTQ is McNemar's exact test on the same samples (src/edgekd/stats.py): "
            "\"better\" or \"worse\" only at p < 0.01, otherwise a tie; the counts are the samples only one of the "
            "two gets right.\n")


def _paired_row(m: dict) -> dict:
    """The QAT+KD vs PTQ verdict per runtime: who wins the samples they disagree on, and whether that is noise."""
    row = {"model": "QAT+KD vs PTQ (paired)"}
    for a in m.get("artifacts") or []:
        paired = (a.get("parity") or {}).get("paired_vs_ptq")
        if paired is not None and a.get("precision") == "int8":
            row[f"{a['format']} ({a['runtime']})"] = (f"{paired['verdict']} (+{paired['candidate_only']} / "
                                                      f"-{paired['baseline_only']}, p={paired['p_value']:.3g})")
    return row
