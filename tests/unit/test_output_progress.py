"""Progress lines without a terminal and the scoped silencing of library noise (issue 16), in-process and fast."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from edgekd.report.noise import native_stderr_quiet, silence_libraries
from edgekd.report.progress import PlainStages, stage_progress


def test_without_a_terminal_each_stage_is_a_start_line_and_an_end_line(capsys):
    with stage_progress(2) as display:  # pytest's stderr is not a terminal
        assert isinstance(display, PlainStages)
        display.start("ptq", "post-training quantization")
        for _ in range(3):
            display.tick()
        display.start("export", "write the artifacts")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[1/2] ptq: post-training quantization"
    assert lines[1].startswith("[1/2] ptq done in ") and lines[1].endswith(" s, 3 steps")
    assert lines[2] == "[2/2] export: write the artifacts"
    assert lines[3].startswith("[2/2] export done in ") and len(lines) == 4


def test_a_failing_stage_ends_as_stopped(capsys):
    with pytest.raises(RuntimeError), PlainStages(1) as display:
        display.start("verify", "run every artifact")
        raise RuntimeError("boom")
    assert capsys.readouterr().err.splitlines()[-1].startswith("[1/1] verify stopped in ")


def test_silencing_hides_library_channels_and_is_undone():
    logger = logging.getLogger("torchao")
    before = list(warnings.filters)
    restore = silence_libraries(verbose=False)
    try:
        assert not logger.isEnabledFor(logging.ERROR) and logger.isEnabledFor(logging.CRITICAL)
        assert warnings.filters[0][:3] == ("ignore", None, Warning)  # every category, every module
    finally:
        restore()
    assert logger.isEnabledFor(logging.WARNING) and list(warnings.filters) == before
    silence_libraries(verbose=True)()  # --verbose changes nothing
    assert logger.isEnabledFor(logging.WARNING) and list(warnings.filters) == before


def test_native_stderr_is_held_and_replayed_only_when_the_call_fails(capfd):
    with native_stderr_quiet():  # not silenced: a no-op
        os.write(2, b"shown\n")
    restore = silence_libraries(verbose=False)
    try:
        with native_stderr_quiet():
            os.write(2, b"[cpuinfo_utils.cpp:71] probe\n")
        with pytest.raises(OSError), native_stderr_quiet():
            os.write(2, b"the cause of the failure\n")
            raise OSError("load failed")
    finally:
        restore()
    err = capfd.readouterr().err
    assert "shown" in err and "cpuinfo" not in err and "the cause of the failure" in err
