"""The table printed at the end of `edgekd export`: artifacts with size, parity and latency against the budgets."""

from __future__ import annotations

from pathlib import Path

from edgekd.context import Context

from .manifest import all_verdicts, overall_verdict
from .markdown import artifact_rows


def print_summary(ctx: Context, folder: Path, quiet: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table

    verdicts = all_verdicts(ctx)
    verdict = overall_verdict(verdicts)
    if quiet:
        return verdict
    console = Console(width=max(Console().width, 140))  # a truncated artifact name is useless in a CI log
    rows = artifact_rows(ctx)
    table = Table(title=f"{ctx.recipe.name} on {ctx.profile.name}")
    for col in (rows[0] if rows else {}):
        table.add_column(col, justify="right" if col not in ("artifact", "runtime", "precision") else "left",
                         overflow="fold")
    for row in rows:
        style = "red" if row["verdict"] == "fail" else None
        table.add_row(*[str(v) for v in row.values()], style=style)
    console.print(table)
    failed = [v for v in verdicts if v["status"] == "fail"]
    for v in failed:
        console.print(f"[red]FAIL[/red] {v['artifact']}: {v['metric']} = {v['value']:.4g}, limit {v['limit']:.4g}, "
                      f"margin {v['margin']:.4g}")
    colour = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
    console.print(f"[{colour}]verdict: {verdict}[/{colour}]  ({len(verdicts)} budget checks)  -> {folder}/report.md")
    return verdict
