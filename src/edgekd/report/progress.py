"""Per-stage progress of `edgekd export` on stderr: live bars on a terminal, plain log lines anywhere else.

A live display written to a pipe or a CI log leaves one cut-off frame; a log wants one line when a stage starts
("[3/8] export: ...") and one when it ends, with its elapsed time.
"""

from __future__ import annotations

import sys
import time


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


class PlainStages:
    """One line per stage start and end; `tick` counts the stage's steps for the end line."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.quiet = total, quiet
        self.index, self.name, self.started, self.steps = 0, None, 0.0, 0

    def __enter__(self) -> PlainStages:
        return self

    def __exit__(self, *exc) -> None:
        self.end(failed=exc[0] is not None)

    def _line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def start(self, name: str, summary: str) -> None:
        self.end()
        self.index += 1
        self.name, self.started, self.steps = name, time.perf_counter(), 0
        self._line(f"[{self.index}/{self.total}] {name}: {summary}")

    def tick(self) -> None:
        self.steps += 1

    def end(self, failed: bool = False) -> None:
        if self.name is None:
            return
        steps = f", {self.steps} steps" if self.steps else ""
        outcome = "stopped" if failed else "done"
        self._line(f"[{self.index}/{self.total}] {self.name} {outcome} in {time.perf_counter() - self.started:.1f} s"
                   f"{steps}")
        self.name = None


class LiveStages:
    """rich bars: one overall bar over the stages and one row per stage, completed when the next starts."""

    def __init__(self, total: int, quiet: bool = False):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)
        from rich.table import Column

        # the stage's summary last: on a narrow terminal it is what gets cut, never the counts or the time
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[summary]}",
                                            table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                                 console=Console(stderr=True, quiet=quiet), transient=False, expand=True)
        self.overall = self.progress.add_task("stages", total=total, summary="")
        self.current = None

    def __enter__(self) -> LiveStages:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.end()
        self.progress.__exit__(*exc)

    def start(self, name: str, summary: str) -> None:
        self.end()
        self.current = self.progress.add_task(name, total=None, summary=summary)

    def tick(self) -> None:
        if self.current is not None:
            self.progress.advance(self.current)

    def end(self) -> None:
        if self.current is not None:
            task = self.progress.tasks[self.current]
            self.progress.update(self.current, total=task.completed or 1, completed=task.completed or 1)
            self.progress.advance(self.overall)
            self.current = None


def stage_progress(total: int, quiet: bool = False):
    """The display for `total` stages: live bars on a terminal, plain lines otherwise."""
    return (LiveStages if stderr_is_terminal() else PlainStages)(total, quiet)
