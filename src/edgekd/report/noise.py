"""Third-party noise on stderr: silenced by default under the CLI, shown with `edgekd --verbose`.

A passing export used to print dozens of library lines a user can do nothing about: torchao's optional `.so` load
failures and torch's pytree, torchvision and export messages (Python `logging`), deprecation warnings raised inside
torch (Python `warnings`), and ExecuTorch's cpuinfo probe, which C++ writes straight to file descriptor 2.
edgekd's own warnings and errors never go through `logging` or `warnings` (they are `warning:`/`error:` lines printed
by edgekd), so silencing those two channels hides only the libraries. The file-descriptor redirection is scoped to
the calls that print, and what they printed is replayed when the call fails, so an error's cause is never hidden.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Callable

_state = {"quiet": False}


def silence_libraries(verbose: bool) -> Callable[[], None]:
    """Quiet Python warnings and every logger up to ERROR unless `verbose`; returns the function that undoes it.

    `logging.disable` rather than per-logger levels: torch configures its loggers when it is imported (after this
    runs, since heavy imports are lazy) and would reset a level set here."""
    if verbose:
        return lambda: None
    saved_warnings = warnings.catch_warnings()
    saved_warnings.__enter__()  # left in restore(): the filters in place before, exactly
    previous = logging.root.manager.disable
    warnings.simplefilter("ignore")
    logging.disable(logging.ERROR)  # torch.export logs "always_classified is unsupported" as an ERROR
    _state["quiet"] = True

    def restore() -> None:
        saved_warnings.__exit__(None, None, None)
        logging.disable(previous)
        _state["quiet"] = False

    return restore


@contextlib.contextmanager
def native_stderr_quiet():
    """Hold what C code writes to file descriptor 2 during the block; replay it if the block raises.

    Only while the CLI silences libraries; otherwise (--verbose, library use, tests) a no-op."""
    if not _state["quiet"]:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (a closed or replaced stderr): nothing to redirect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            held = sink.read().decode(errors="replace")
            if held:
                sys.stderr.write(held)
                sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
