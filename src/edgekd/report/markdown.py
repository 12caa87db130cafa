"""report.md: what a person reads after a run -- artifacts against budgets, parity, decisions, timings, plots.

Rendered from the manifest (not from the live run), so `edgekd export`, `edgekd bench` and `edgekd bench import`
write the same report from the same record. Every artifact table puts each runtime's fp32 artifact first and its
quantized artifacts under it, with the speedup over that fp32 artifact measured in the same run on the same runner:
an int8 file that is smaller but slower than its fp32 sibling is visible at a glance.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.report.prune import prune_section

MEASURED_FIRST = ("device", "host")


def _mb(n: int | None) -> str:
    return f"{n / 1e6:.2f}" if n else "-"


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def best_bench(record: dict) -> dict:
    """The result a table shows for an artifact: a device measurement when there is one, else a host measurement."""
    results = [r for r in (record.get("bench") or {}).values() if isinstance(r, dict) and "latency_ms" in r]
    if "latency_ms" in (record.get("bench") or {}):  # a flat result (older manifests)
        results = [record["bench"]]
    for where in MEASURED_FIRST:
        for r in results:
            if (r.get("device") or {}).get("measured_on") == where:
                return r
    return results[0] if results else {}


def ordered(artifacts: list[dict]) -> list[dict]:
    """Grouped by runtime (in order of first appearance), the fp32 artifact first in each group."""
    runtimes = list(dict.fromkeys(a.get("runtime") for a in artifacts))
    return sorted(artifacts, key=lambda a: (runtimes.index(a.get("runtime")), a.get("precision") != "fp32"))


def _speedup(record: dict, result: dict, artifacts: list[dict]) -> str:
    if record.get("precision") == "fp32":
        return "fp32 (1.00x)" if result else "-"
    if result.get("speedup_vs_fp32") is not None:
        return f"{result['speedup_vs_fp32']:.2f}x"
    partner = next((a for a in artifacts if a.get("precision") == "fp32" and a.get("runtime") == record.get("runtime")
                    and a.get("format") == record.get("format")), None)
    return "no fp32 artifact" if partner is None and result else "-"


def _deliverable(record: dict, device_runtime: str | None) -> bool:
    return (record.get("runtime") == device_runtime and not record.get("is_reference")
            and (record.get("details") or {}).get("role") != "baseline")


def artifact_verdict(record: dict, open_budgets: list[str] | tuple = ()) -> str:
    statuses = {v.get("status") for v in record.get("verdicts") or []}
    if "fail" in statuses:
        return "fail"
    if open_budgets or statuses & {"not measured", "not measured on the device"}:
        return "unverified"
    return "pass" if statuses else "-"


def artifact_rows(artifacts: list[dict], open_budgets: list[str] | tuple = (), device_runtime: str | None = None,
                  ) -> list[dict]:
    """One row per artifact (manifest records), fp32 beside its quantized siblings; columns empty everywhere go.

    open_budgets: budgets no verdict speaks to; the device's deliverables (device_runtime, not references or
    baselines) are then unverified whatever their own verdicts say."""
    rows = []
    for a in ordered(artifacts):
        base = next((x.get("bytes") for x in artifacts if x.get("format") == a.get("format")
                     and x.get("precision") == "fp32"), None)
        b = best_bench(a)
        lat, parity, where = b.get("latency_ms") or {}, a.get("parity") or {}, b.get("device") or {}
        memory = b.get("memory_for_budget") or {}
        peak = memory.get("value") if "memory_for_budget" in b else b.get("peak_rss_mb")
        rows.append({
            "artifact": a["name"], "runtime": a.get("runtime"),
            "precision": a.get("precision", "") + (" (ref)" if a.get("is_reference") else ""),
            "MB": _mb(a.get("bytes")), "size vs fp32": f"{a['bytes'] / base:.0%}" if base and a.get("bytes") else "-",
            "top1 agree": _fmt(parity.get("top1_agreement")), "cosine": _fmt(parity.get("cosine_mean")),
            "accuracy": _fmt(parity.get("accuracy")), "p50 ms": _fmt(lat.get("p50"), 3),
            "p90 ms": _fmt(lat.get("p90"), 3), "speedup vs fp32, same runtime": _speedup(a, b, artifacts),
            "load ms": _fmt(b.get("load_ms"), 3), "first run ms": _fmt(b.get("first_run_ms"), 3),
            "peak MB": _fmt(peak, 4) if peak is not None else ("n/m" if b else "-"),
            "measured on": f"{where['measured_on']} ({where.get('runner', '')})" if where else (
                "device (import)" if b.get("source") else "-"),
            "verdict": artifact_verdict(a, open_budgets if _deliverable(a, device_runtime) else ()),
        })
    keep = [k for k in (rows[0] if rows else {}) if k in ("artifact", "verdict") or any(r[k] != "-" for r in rows)]
    return [{k: r[k] for k in keep} for r in rows]


def table(rows: list[dict]) -> str:
    if not rows:
        return "_none_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r.get(h, "-")) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


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
            status += f" (host timing {_fmt(v['host_value'])}, not judged)"
        rows.append({"artifact": v["artifact"], "metric": v["metric"], "value": _fmt(v.get("value")),
                     "limit": _fmt(v.get("limit")), "margin": _fmt(v.get("margin")),
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
        parts.append(f"\nPyTorch converted (quantized) model vs fp32: top-1 agreement {_fmt(q.get('top1_agreement'))}, "
                     f"cosine {_fmt(q.get('cosine_mean'))}.\n")
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
            parts.append(f"\n**{key}**: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics[key].items()
                                                    if not isinstance(v, (list, dict))) + "\n")
    if m.get("plots"):
        parts.append("\n## Plots\n")
        for name, path in m["plots"].items():
            parts.append(f"![{name}]({Path(path).as_posix()})\n")
    sections = metrics.get("report_sections") or {}  # other areas' sections: {title: markdown}
    return "\n".join(parts + [f"\n## {title}\n{body}" for title, body in sections.items()])


def render(ctx, root: Path) -> str:
    """report.md of a finished run (the manifest it writes, rendered)."""
    from .manifest import build_manifest

    return render_manifest(build_manifest(ctx, root))


def side_by_side(m: dict) -> str:
    """After QAT on labelled data: fp32, PTQ and QAT+KD accuracy per runtime in one table (issue 3's question:
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
