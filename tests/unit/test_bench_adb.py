"""The adb runner without a phone: the exact argv it runs, `adb devices` states, and its error paths.

No phone is attached on CI, so the tests pin what can be checked for real here: the argument lists (each device
shell string parses back to exactly the intended words), the device-side "binary missing" probe executed by a real
POSIX sh, executor_runner's output parsing, and `edgekd bench --runner adb` failing with exit 2 and nothing written
when adb is absent or (with the real adb client, when installed) no device is attached.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.adb import (BINARY_OK, AdbRunner, binary_missing, device_problem, parse_binary_output,
                              parse_devices)
from edgekd.errors import EdgekdError
from tests.bench_support import artifacts_folder, mlp_pte, snapshot

EDGEKD = Path(sys.executable).with_name("edgekd")
BINARY = "/data/local/tmp/executor_runner"


# ------------------------------------------------------------------------------------------------ argv
def test_argv_without_and_with_serial():
    r = AdbRunner(binary=BINARY)
    assert r.base() == ["adb"]
    assert r.push_command(Path("/w/m.pte"), "/data/local/tmp/edgekd/run-1/m.pte") == [
        "adb", "push", "/w/m.pte", "/data/local/tmp/edgekd/run-1/m.pte"]
    r = AdbRunner(binary=BINARY, serial="R58M12ABCDE")
    assert r.pull_command("/data/local/tmp/x.json", Path("/w/x.json")) == [
        "adb", "-s", "R58M12ABCDE", "pull", "/data/local/tmp/x.json", "/w/x.json"]
    assert r.shell_command(["rm", "-rf", "/data/local/tmp/edgekd/run-1"]) == [
        "adb", "-s", "R58M12ABCDE", "shell", "rm -rf /data/local/tmp/edgekd/run-1"]


def test_benchmark_command_pins_cores_and_quotes_every_word():
    r = AdbRunner(binary="/data/local/tmp/my runner", serial="emulator-5554")
    pte = "/data/local/tmp/edgekd/run-1/m lp;reboot.pte"
    assert r.binary_command(pte, 30) == ["/data/local/tmp/my runner", f"--model_path={pte}", "--num_executions=30"]
    pinned = r.binary_command(pte, 5, cores=[4, 5, 6, 7])
    assert pinned[:2] == ["taskset", "f0"]  # big cores 4-7 of a Snapdragon 865 as a hex mask
    argv = r.shell_command(pinned)
    assert argv[:4] == ["adb", "-s", "emulator-5554", "shell"] and len(argv) == 5
    assert shlex.split(argv[4]) == pinned  # the device shell sees these words and nothing else


def test_binary_probe_runs_in_a_real_sh_and_decides_by_its_marker(tmp_path):
    """The device-side string of the probe, run by this machine's POSIX sh (Android's mksh/toybox behave alike)."""
    exe = tmp_path / "exec runner;touch pwned"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "not executable"
    plain.write_text("x")
    for binary, present in [(exe, True), (plain, False), (tmp_path / "missing", False)]:
        argv = AdbRunner(binary=str(binary)).binary_probe_command()
        assert argv[:2] == ["adb", "shell"]
        out = subprocess.run(["sh", "-c", argv[2]], capture_output=True, text=True, cwd=tmp_path, timeout=10)
        assert (BINARY_OK in out.stdout) is present, (binary, out)
    assert not (tmp_path / "pwned").exists()
    err = binary_missing(BINARY)
    assert err.code == 2 and err.key == "runner.binary" and BINARY in err.message


# ------------------------------------------------------------------------------------------------ devices
ADB_DEVICES = """* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
R58M12ABCDE\tdevice
emulator-5554\tunauthorized
192.168.1.7:5555\toffline

"""


def test_parse_devices_reads_states_and_ignores_daemon_chatter():
    assert parse_devices(ADB_DEVICES) == {"R58M12ABCDE": "device", "emulator-5554": "unauthorized",
                                          "192.168.1.7:5555": "offline"}
    assert parse_devices("List of devices attached\n\n") == {}


@pytest.mark.parametrize("states,serial,message", [
    ({}, None, "no device attached"),
    ({"emulator-5554": "unauthorized"}, None, "no device attached (emulator-5554 unauthorized)"),
    ({"A": "device", "B": "device"}, None, "2 devices attached; name one"),
    ({"A": "device"}, "B", "no device 'B' attached"),
    ({"A": "offline"}, "A", "device 'A' is offline"),
])
def test_device_problems_are_named(states, serial, message):
    problem = device_problem(states, serial)
    assert isinstance(problem, EdgekdError) and problem.message == message and problem.code == 2


def test_ready_device_is_no_problem():
    assert device_problem({"A": "device", "B": "offline"}, None) is None
    assert device_problem({"A": "device", "B": "device"}, "B") is None


# ------------------------------------------------------------------------------------------------ output
def test_executor_runner_summary_gives_the_mean_only_and_says_so():
    text = "I 00:00:00.101 executor_runner.cpp:150] Model executed successfully 20 time(s) in 123.4 ms.\n"
    result = parse_binary_output(text, 0, "adb x")
    assert result["latency_ms"] == {"n": 20, "mean": pytest.approx(6.17)} and "p50" not in result["latency_ms"]
    assert any("percentiles" in m for m in result["not_measured"])
    with pytest.raises(EdgekdError, match="exit status 1: .*no such file"):
        parse_binary_output("E 0 executor_runner: open failed: no such file\n", 1, "adb x")
    with pytest.raises(EdgekdError, match="no timing in its output"):
        parse_binary_output("hello\n", 0, "adb x")


def test_an_edgekd_json_line_is_used_as_is():
    result = parse_binary_output('log line\n{"ok": true, "latency_ms": {"p50": 3.0}}\n', 0, "adb x")
    assert result["latency_ms"]["p50"] == 3.0


# ------------------------------------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def pte_folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("adb")
    return artifacts_folder(base / "out" / "tiny", mlp_pte(base / "src" / "mlp.pte"), {"x": np.ones((1, 32),
                                                                                                 np.float32)})


def edgekd(*args, env) -> subprocess.CompletedProcess:
    if not EDGEKD.is_file():
        pytest.skip(f"the edgekd command is not installed beside {sys.executable}")
    return subprocess.run([str(EDGEKD), *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def test_adb_not_installed_exit_2_nothing_written(pte_folder, tmp_path):
    env = {**os.environ, "PATH": str(EDGEKD.parent), "HOME": str(tmp_path)}  # a PATH without adb
    before = snapshot(pte_folder)
    result = edgekd("bench", "--profile", "snapdragon865", "--artifacts", pte_folder, "--runner", "adb",
                    "--binary", BINARY, "--runs", "3", env=env)
    assert result.returncode == 2, result.stderr + result.stdout
    assert result.stderr.startswith("error: adb not installed ('adb' not found)")
    assert snapshot(pte_folder) == before


@pytest.mark.skipif(shutil.which("adb") is None, reason="the adb client is not installed (apt-get install adb)")
def test_real_adb_with_no_phone_exit_2_nothing_written(pte_folder, tmp_path):
    """The real adb client and server (on a private port, stopped afterwards) with no device attached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port), "HOME": str(tmp_path)}
    before = snapshot(pte_folder)
    try:
        result = edgekd("bench", "--profile", "snapdragon865", "--artifacts", pte_folder, "--runner", "adb",
                        "--binary", BINARY, "--runs", "3", env=env)
    finally:
        subprocess.run(["adb", "kill-server"], env=env, capture_output=True, timeout=30)
    if "List of devices" in result.stdout or "device '" in result.stderr:
        pytest.skip("a device is attached to this machine")
    assert result.returncode == 2, result.stderr + result.stdout
    assert result.stderr.startswith("error: no device attached"), result.stderr
    assert snapshot(pte_folder) == before
