"""`edgekd bench --runner ssh` against a real OpenSSH server on 127.0.0.1 (started by tests/sshd_support.py).

The board is this machine reached over ssh: measure.py, the ONNX artifact and the inputs are copied with scp into a
fresh folder under --remote-dir, run with --remote-python (this venv's python, which has onnxruntime) and the folder
is removed. Each case runs the real `edgekd` command in a subprocess, as a user or CI would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.bench_support import artifacts_folder, mlp_onnx, profile_copy, snapshot
from tests.sshd_support import keygen, sshd  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

EDGEKD = Path(sys.executable).with_name("edgekd")
RUNS = ["--warmup", "2", "--runs", "20"]
RUNNER_METRICS = ("latency_p50_ms", "latency_p90_ms", "peak_memory_mb")


def edgekd(*args) -> subprocess.CompletedProcess:
    if not EDGEKD.is_file():
        pytest.skip(f"the edgekd command is not installed beside {sys.executable} (pip install -e .)")
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([str(EDGEKD), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def marker_name():
    """A file name a shell would create if any path were pasted into a remote command unquoted."""
    return f"edgekd-pwned-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def folder(tmp_path, marker_name):
    """An artifacts folder whose path and artifact name hold blanks and shell syntax (quoting is part of the test)."""
    model = mlp_onnx(tmp_path / "src" / f"mlp ;touch {marker_name}; $(touch {marker_name}).onnx", layers=2, width=32)
    return artifacts_folder(tmp_path / "out dir" / "tiny", model, {"x": np.ones((1, 32), np.float32)})


def ssh_args(sshd, remote: Path, python: str = sys.executable) -> list[str]:  # noqa: F811
    return ["--runner", "ssh", *sshd.cli_args(), "--remote-python", python, "--remote-dir", str(remote)]


def runner_verdicts(manifest: dict, runner: str) -> dict[str, str]:
    return {v["metric"]: v["status"] for a in manifest["artifacts"] for v in a["verdicts"] if v.get("runner") == runner}


def leftovers(remote: Path) -> list[str]:
    return sorted(p.name for p in remote.iterdir()) if remote.exists() else []


def assert_not_injected(marker_name: str, *places: Path) -> None:
    for place in (Path.home(), Path.cwd(), *places):
        assert not (place / marker_name).exists(), f"a path reached a shell unquoted: {place / marker_name}"


def test_ssh_gives_the_local_verdicts_and_the_manifest_shows_both(sshd, folder, tmp_path, marker_name):  # noqa: F811
    remote = tmp_path / "remote"
    local = edgekd("bench", "--profile", "x86-cpu", "--artifacts", folder, *RUNS)
    assert local.returncode == 0, local.stderr + local.stdout
    over_ssh = edgekd("bench", "--profile", "x86-cpu", "--artifacts", folder, *RUNS, *ssh_args(sshd, remote))
    assert over_ssh.returncode == 0, over_ssh.stderr + over_ssh.stdout

    manifest = json.loads((folder / "manifest.json").read_text())
    (art,) = manifest["artifacts"]
    assert set(art["bench"]) == {"local", "ssh"} and set(manifest["bench_runs"]) == {"local", "ssh"}
    by_local, by_ssh = runner_verdicts(manifest, "local"), runner_verdicts(manifest, "ssh")
    assert set(by_local) == set(RUNNER_METRICS) and by_ssh == by_local == {m: "pass" for m in RUNNER_METRICS}
    assert manifest["verdict"] == "pass"
    ssh_result = art["bench"]["ssh"]
    assert ssh_result["ok"] and ssh_result["runs"] == 20 and len(ssh_result["latency_ms"]["samples"]) == 20
    assert ssh_result["runner"].startswith(f"ssh {sshd.user}@127.0.0.1:{sshd.port}")
    assert ssh_result["artifact"] == art["path"]  # the odd name arrived intact on the "board"
    assert ssh_result["peak_rss_mb"] > 0 and ssh_result["latency_ms"]["p50"] > 0
    assert manifest["bench_runs"]["ssh"]["runner"].startswith("ssh ")
    assert (folder / "bench-ssh.junit.xml").is_file() and (folder / "bench-local.junit.xml").is_file()
    assert remote.is_dir() and leftovers(remote) == []  # the run folder on the board was made, then removed
    assert_not_injected(marker_name, remote, folder)
    p50 = {r: art["bench"][r]["latency_ms"]["p50"] for r in ("local", "ssh")}
    print(f"\np50 ms on the same artifact: local {p50['local']:.4f}, ssh {p50['ssh']:.4f}")


def test_ssh_tightened_budget_fails_with_exit_1_naming_the_margin(sshd, folder, tmp_path):  # noqa: F811
    profile = profile_copy(tmp_path, latency_p50_ms=1e-6)
    result = edgekd("bench", "--profile", profile, "--artifacts", folder, *RUNS, *ssh_args(sshd, tmp_path / "r"))
    assert result.returncode == 1, result.stderr + result.stdout
    text = result.stdout + result.stderr
    assert "latency_p50_ms" in text and "margin -" in text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert runner_verdicts(manifest, "ssh")["latency_p50_ms"] == "fail" and manifest["verdict"] == "fail"


def _silent_server():
    """A TCP port that accepts connections and never speaks SSH: a board that hangs; ConnectTimeout must end it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


@pytest.mark.parametrize("case", ["closed port", "silent server", "wrong key", "remote python missing",
                                  "remote runtime missing"])
def test_ssh_failures_one_line_exit_2_nothing_written(sshd, folder, tmp_path, case):  # noqa: F811
    remote = tmp_path / "remote"
    args = ssh_args(sshd, remote)
    server = None
    if case == "closed port":
        from tests.sshd_support import free_port

        args[args.index("--port") + 1] = str(free_port())
        expect = "connection refused"
    elif case == "silent server":
        server = _silent_server()
        args[args.index("--port") + 1] = str(server.getsockname()[1])
        args += ["--set", "runner.connect_timeout_s=1"]
        expect = "connection timed out"
    elif case == "wrong key":
        args[args.index("--key") + 1] = str(keygen(tmp_path / "other_key"))
        expect = "authentication failed: the key was not accepted"
    elif case == "remote python missing":
        args[args.index("--remote-python") + 1] = "/nonexistent/python3"
        expect = "remote python '/nonexistent/python3' not found"
    else:  # a Python without site-packages: no numpy, no onnxruntime, as on a fresh board
        args[args.index("--remote-python") + 1] = f"{sys.executable} -S"
        expect = "lacks numpy, onnxruntime: pip install numpy onnxruntime"
    before = snapshot(folder)
    try:
        result = edgekd("bench", "--profile", "x86-cpu", "--artifacts", folder, *RUNS, *args)
    finally:
        if server is not None:
            server.close()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: ssh ") and expect in lines[0], result.stderr
    assert snapshot(folder) == before  # manifest, JUnit, plots: nothing written
    if case.startswith("remote"):  # the copy happened, then the run failed: the run folder was removed again
        assert remote.is_dir() and leftovers(remote) == []
    else:
        assert not remote.exists()
