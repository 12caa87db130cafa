"""Output people can read (issue 16): a passing export prints edgekd's lines, not the libraries' noise; --verbose
brings the libraries' lines back. A real `edgekd export` in a real process, stderr not a terminal."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import DIGITS_RECIPE, write_recipe
from tests.hostile_support import EDGEKD, env_for

NOISE = ("Failed to load", "Warning", "torchvision", "cpuinfo", "always_classified", "W1", "E1")


def _export(tmp_path, *top_level: str) -> subprocess.CompletedProcess:
    recipe = write_recipe(tmp_path, DIGITS_RECIPE)
    return subprocess.run([*EDGEKD, *top_level, "export", "-p", "x86-cpu", "-r", str(recipe), "--out",
                           str(tmp_path / "out"), "--force", "--skip", "bench"], capture_output=True, text=True,
                          env=env_for(tmp_path), cwd=tmp_path, timeout=600)


def _library_lines(stderr: str) -> list[str]:
    """Lines that are not edgekd's own: its progress lines start with `[i/n]`, its messages with a lowercase
    `word:` (error:, warning:, unverified ...)."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith("[") and not line.split(":", 1)[0].islower()]


@pytest.mark.slow
def test_a_passing_export_prints_no_library_noise_unless_verbose(tmp_path):
    quiet = _export(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stderr.splitlines()
    assert not [line for line in lines if any(word in line for word in NOISE)], quiet.stderr
    assert len(_library_lines(quiet.stderr)) <= 3, quiet.stderr
    stages = [line for line in lines if line.startswith("[")]
    assert any("export" in line for line in stages) and any("verify" in line for line in stages), quiet.stderr
    assert "verdict:" in quiet.stdout  # edgekd's own summary is untouched

    verbose = _export(tmp_path, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Failed to load" in verbose.stderr or "torchvision" in verbose.stderr, verbose.stderr
    assert len(_library_lines(verbose.stderr)) > len(_library_lines(quiet.stderr)), verbose.stderr
