"""The fp32-beside-quantized comparison: one row per artifact of a manifest, each runtime's fp32 artifact first, with
the speedup measured against it in the same run. manifest.json stores these rows; report.md and the console show them.
`table` renders any such rows as markdown, for every report section (report/markdown.py, report/prune.py, llm/).
"""

from __future__ import annotations

MEASURED_FIRST = ("device", "host")


def _mb(n: int | None) -> str:
    return f"{n / 1e6:.2f}" if n else "-"


def fmt_value(value, digits: int = 4) -> str:
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
            "top1 agree": fmt_value(parity.get("top1_agreement")), "cosine": fmt_value(parity.get("cosine_mean")),
            "accuracy": fmt_value(parity.get("accuracy")), "p50 ms": fmt_value(lat.get("p50"), 3),
            "p90 ms": fmt_value(lat.get("p90"), 3), "speedup vs fp32, same runtime": _speedup(a, b, artifacts),
            "load ms": fmt_value(b.get("load_ms"), 3), "first run ms": fmt_value(b.get("first_run_ms"), 3),
            "peak MB": fmt_value(peak, 4) if peak is not None else ("n/m" if b else "-"),
            "measured on": f"{where['measured_on']} ({where.get('runner', '')})" if where else (
                "device (import)" if b.get("source") else "-"),
            "verdict": artifact_verdict(a, open_budgets if _deliverable(a, device_runtime) else ()),
        })
    keep = [k for k in (rows[0] if rows else {}) if k in ("artifact", "verdict") or any(r[k] != "-" for r in rows)]
    return [{k: r[k] for k in keep} for r in rows]


def table(rows: list[dict], empty: str = "_none_\n", missing: str = "-") -> str:
    """Rows (dicts with the same keys) as a markdown table; the first row's keys are the columns."""
    if not rows:
        return empty
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r.get(h, missing)) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"
