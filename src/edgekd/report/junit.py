"""Budget verdicts for CI: a JUnit XML (one test case per budget verdict) and a GitHub step summary table.

CI systems already know how to show JUnit failures; one test case per (artifact, runner, budget) puts
"latency_p50_ms: margin -1.2 ms" exactly where a reviewer looks. A budget that was not measured is a skipped test
case, not a passing one.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from edgekd.report.atomic import write_bytes


def _as_dict(v) -> dict:
    return v.to_dict() if hasattr(v, "to_dict") else dict(v)


def _fmt(x, unit: str = "") -> str:
    if x is None:
        return "-"
    text = f"{x:.4g}" if isinstance(x, float) else str(x)
    return f"{text} {unit}".strip()


def verdict_line(v: dict) -> str:
    unit = v.get("unit") or ""
    if v.get("value") is None:
        host = "" if v.get("host_value") is None else f"; host timing {_fmt(v['host_value'], unit)}, not judged"
        return f"{v['metric']}: {v.get('status') or 'not measured'} (limit {_fmt(v.get('limit'), unit)}{host})"
    pct = v.get("margin_pct")
    pct_text = f" ({pct:+.1f}%)" if pct is not None else ""
    return (f"{v['metric']} = {_fmt(v['value'], unit)}, limit {_fmt(v.get('limit'), unit)} ({v.get('kind', 'max')}), "
            f"margin {v['margin']:+.4g}{(' ' + unit) if unit else ''}{pct_text}")


def junit_xml(verdicts, suite: str = "edgekd budgets") -> bytes:
    rows = [_as_dict(v) for v in verdicts]
    failures = sum(1 for v in rows if v.get("status") == "fail")
    skipped = sum(1 for v in rows if v.get("status") not in ("pass", "fail"))
    root = ET.Element("testsuites", name="edgekd", tests=str(len(rows)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(rows)), failures=str(failures),
                       skipped=str(skipped), errors="0")
    for v in rows:
        runner = v.get("runner") or "size"
        case = ET.SubElement(ts, "testcase", classname=f"{v.get('artifact', '')}.{runner}", name=v["metric"])
        text = verdict_line(v)
        if v.get("status") == "fail":
            ET.SubElement(case, "failure", message=text, type="BudgetExceeded").text = text
        elif v.get("status") != "pass":
            ET.SubElement(case, "skipped", message=text)
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(verdicts, path: Path, suite: str = "edgekd budgets") -> Path:
    return write_bytes(Path(path), junit_xml(verdicts, suite))


def markdown_table(verdicts, skipped: list[tuple[str, str]] = ()) -> str:
    rows = [_as_dict(v) for v in verdicts]
    icon = {"pass": "✅ pass", "fail": "❌ fail"}
    lines = ["| artifact | runner | budget | value | limit | margin | status |", "|---|---|---|---|---|---|---|"]
    for v in rows:
        unit = v.get("unit") or ""
        margin = "-" if v.get("margin") is None else (
            f"{v['margin']:+.4g} {unit} ({v['margin_pct']:+.1f}%)".replace("  ", " ")
            if v.get("margin_pct") is not None else f"{v['margin']:+.4g}")
        lines.append(f"| {v.get('artifact', '')} | {v.get('runner') or '-'} | {v['metric']} | "
                     f"{_fmt(v.get('value'), unit)} | {_fmt(v.get('limit'), unit)} | {margin} | "
                     f"{icon.get(v.get('status'), '⚠️ ' + str(v.get('status')))} |")
    text = "\n".join(lines) + "\n"
    if skipped:
        text += "\n" + "\n".join(f"- {name}: not benchmarked ({why})" for name, why in skipped) + "\n"
    return text


def append_github_summary(verdicts, title: str, skipped: list[tuple[str, str]] = ()) -> Path | None:
    """Append the verdict table to $GITHUB_STEP_SUMMARY (append is the protocol there: earlier steps' text stays)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(f"### {title}\n\n{markdown_table(verdicts, skipped)}\n")
    return Path(target)
