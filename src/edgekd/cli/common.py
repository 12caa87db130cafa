"""What every `edgekd` command shares: the error guard (one `error:` line per problem and the exit code of rule 4 of
docs/architecture.md; a traceback only with --debug) and option callbacks.

The command modules of this package import it; it imports none of them, so the package has no import cycle.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from edgekd.errors import EXIT_BAD_INPUT, EdgekdError, InternalError


def handles_errors(fn):
    """Turn any exception a command raises into its `error:` lines and exit code; a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own usage errors and exits: click prints them (exit 2 for usage)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-written was kept", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the top-level guard: one line per problem, never a traceback
            _report(exc)

    return wrapper


def finite(ctx, param, value):
    """click callback for float options: nan and inf pass FloatRange's bounds, so refuse them here."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug")) or os.environ.get("EDGEKD_DEBUG") == "1"


def _command_path() -> str:
    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "edgekd"


def _report(exc: Exception, command: str | None = None) -> None:
    """Print `exc` as `error:` lines and exit: EdgekdError with its own code, anything else exit 2.

    An OSError or MemoryError is the environment's (disk full, permission, out of memory): named with the command.
    Anything else is a bug in edgekd: "internal error", the command, the exception type and the innermost edgekd
    frame, so a report can be filed from the one line; --debug (or EDGEKD_DEBUG=1) adds the full traceback."""
    import traceback

    if _debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, EdgekdError):
        for line in exc.error_lines():
            click.echo(line, err=True)
        sys.exit(exc.code)
    detail = " ".join(str(exc).split())
    detail = detail if len(detail) <= 300 else detail[:300] + "..."
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if isinstance(exc, (OSError, MemoryError)) and not isinstance(exc, InternalError):
        click.echo(f"error: {command or _command_path()} failed: {what}", err=True)
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
        ours = [f for f in frames if f"{os.sep}edgekd{os.sep}" in f.filename]
        where = ""
        for label, frame in (("at", frames[-1] if frames else None), ("from", ours[-1] if ours else None)):
            if frame is not None and (label == "at" or frame is not frames[-1]):
                where += f" {label} {_short_path(frame.filename)}:{frame.lineno} in {frame.name}"
        hint = "" if _debug_enabled() else "; rerun with --debug for the traceback"
        click.echo(f"error: internal error in {command or _command_path()}: {what}{where}{hint}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _usage_error(exc: click.ClickException) -> None:
    """click's own errors (bad option value, unknown command) as one `error:` line and exit 2, like edgekd's."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        raise exc  # a bare group: click prints its help
    where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "edgekd"
    click.echo(f"error: {where}: {' '.join(exc.format_message().split())}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _short_path(filename: str) -> str:
    """edgekd/stages/fuse.py, torch/nn/functional.py: the package-relative part a bug report needs."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor):])
    return Path(filename).name


class GuardedGroup(click.Group):
    """The top-level group: an exception escaping a command without handles_errors still becomes one line, and so
    does a usage error (click's default is a usage block plus `Error:`)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            _usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except click.ClickException as exc:
            _usage_error(exc)
        except Exception as exc:  # noqa: BLE001 - see _report
            _report(exc, " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand))))
