"""The table printed at the end of `edgekd export`: artifacts with size, parity and latency against the budgets.

Printed from the manifest the run wrote (the same rows as report.md and manifest["comparison"]): each runtime's
fp32 artifact above its quantized ones with the speedup column, where every timing was measured (device or host),
and an overall verdict that is "unverified", with the reason, when a device budget was only measured on this host.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekd.context import Context


SHORT = {"speedup vs fp32, same runtime": "speedup vs fp32", "size vs fp32": "size/fp32", "top1 agree": "top1",
         "first run ms": "1st run ms", "measured on": "measured on"}


def print_summary(ctx: Context, folder: Path, quiet: bool = False) -> str:
    """Print the run's table and verdict from folder/manifest.json; returns the overall verdict."""
    from edgekd.report.manifest import read_manifest

    manifest = read_manifest(Path(folder) / "manifest.json")
    verdict = manifest.get("verdict", "no budgets checked")
    if not quiet:
        print_manifest(manifest, folder, title=f"{ctx.recipe.name} on {ctx.profile.name}")
    return verdict


def comparison_table(manifest: dict, title: str = ""):
    """The artifacts table (manifest["comparison"]) as a rich Table: fp32 above quantized, per runtime."""
    from rich.table import Table

    rows = manifest.get("comparison") or []
    table = Table(title=title or None, caption="speedup: p50 of the fp32 artifact of the same runtime / p50 of this "
                  "one; host rows are host timings, never judged against the device's budgets")
    for col in (rows[0] if rows else {}):
        table.add_column(SHORT.get(col, col), overflow="fold", no_wrap=True,
                         justify="left" if col in ("artifact", "runtime", "precision", "measured on") else "right")
    for row in rows:
        table.add_row(*[str(v) for v in row.values()], style="red" if row["verdict"] == "fail" else None)
    return table


def wide_console():
    from rich.console import Console

    return Console(width=max(Console().width, 240))  # a truncated or folded cell is useless in a CI log


def print_manifest(manifest: dict, folder: Path, title: str = "") -> None:
    from .manifest import manifest_verdicts

    console = wide_console()
    console.print(comparison_table(manifest, title))
    verdicts = manifest_verdicts(manifest)
    for v in verdicts:
        if v["status"] == "fail":
            unit = f" {v['unit']}" if v.get("unit") else ""
            console.print(f"[red]FAIL[/red] {v['artifact']}: {v['metric']} = {v['value']:.4g}{unit}, limit "
                          f"{v['limit']:.4g}{unit}, margin {v['margin']:.4g}{unit}", highlight=False)
    verdict = manifest.get("verdict", "no budgets checked")
    for line in manifest.get("verdict_notes") or []:
        console.print(f"[yellow]unverified[/yellow] {line}", highlight=False)
    judged = sum(1 for v in verdicts if v["status"] in ("pass", "fail"))
    open_checks = len(verdicts) - judged + len(manifest.get("missing_budgets") or [])
    colour = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
    console.print(f"[{colour}]verdict: {verdict}[/{colour}]  ({judged} budget checks judged, {open_checks} "
                  f"unverified)  -> {folder}/report.md", highlight=False)


# ------------------------------------------------------------------------------------------------ listing tables
STRONG = re.compile(r"[^/:]*[/:]?")  # break after a folder or a scheme first
WEAK = re.compile(r"[^_.\- ]*[_.\- ]?")  # then inside a piece still too long
BUDGET_LABELS = {"latency_p50_ms": "p50 {} ms", "latency_p90_ms": "p90 {} ms", "peak_memory_mb": "memory {} MB",
                 "artifact_size_mb": "size {} MB", "accuracy_drop": "acc. drop {}",
                 "prefill_tokens_per_s": "prefill >= {} tok/s", "decode_tokens_per_s": "decode >= {} tok/s",
                 "perplexity_increase": "perplexity +{}", "min_speedup_vs_fp32": "speedup >= {}x"}


def wrap_name(name: str, width: int) -> str:
    """`name` in lines of at most `width` characters, broken after a separator (/ : _ - . space) and never inside
    a word: a terminal of 80 columns then shows `efficientnet_lite0/` over `ptq_int8.yaml`, not `efficientnet_lit…`.
    A piece longer than `width` stays whole."""
    lines, line = [], ""
    for strong in filter(None, STRONG.findall(name)):
        whole = len(strong.rstrip()) <= width
        if line and (not whole or len(line) + len(strong.rstrip()) > width):  # a split piece starts its own line
            lines.append(line.rstrip())
            line = ""
        for piece in [strong] if whole else filter(None, WEAK.findall(strong)):
            if line and len(line.rstrip()) + len(piece.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            line += piece
    return "\n".join(lines + ([line.rstrip()] if line else []))


def budget_lines(budgets: dict) -> str:
    """The budgets a profile sets, one per line with its unit (`p50 60 ms`); unset ones are left out."""
    return "\n".join(BUDGET_LABELS.get(k, k + " {}").format(f"{v:g}" if isinstance(v, float) else v)
                     for k, v in budgets.items() if v is not None)


def listing_table(header: dict[str, int | None], rows: list[list[str]]):
    """A rich Table whose columns with a width are names wrapped at separators (wrap_name) that never fold; width 0
    keeps a cell's own lines (never folded); None (descriptions) wraps at spaces in what is left of the terminal."""
    from rich.table import Table

    table = Table()
    for index, (title, width) in enumerate(header.items()):
        if width is None:
            table.add_column(title, overflow="fold", ratio=1)
        else:
            longest = max([len(line) for row in rows
                           for line in (wrap_name(row[index], width) if width else row[index]).splitlines()] + [1])
            table.add_column(title, no_wrap=True, min_width=max(longest, len(title)))
    for row in rows:
        table.add_row(*[wrap_name(cell, width) if width else cell for cell, width in zip(row, header.values())])
    return table
