"""The ssh runner's command construction: argument lists, one remote string of quoted words, safe options.

The real server behaviour is tested in tests/integration/test_bench_ssh.py; this file pins the argv itself, so a
change that pastes a path into a shell string or drops BatchMode/ConnectTimeout fails here without any server.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from edgekd.bench.runner import BenchRequest
from edgekd.errors import EdgekdError

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("scp") is None,
                                reason="OpenSSH client (ssh, scp) not installed")


def runner(tmp_path, **kw):
    from edgekd.bench.ssh import SshRunner

    key = tmp_path / "id_test"
    key.write_text("not read by these tests\n")
    args = {"host": "10.0.0.7", "user": "nvidia", "port": 2222, "key": str(key),
            "known_hosts": tmp_path / "state dir" / "known_hosts", "connect_timeout_s": 7}
    return SshRunner(**{**args, **kw})


def option_values(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-o")


def test_ssh_argv_is_a_list_with_batchmode_timeout_and_a_quoted_remote_command(tmp_path):
    r = runner(tmp_path, remote_python="/opt/py 3/bin/python3 -X utf8")
    nasty = ["/tmp/edgekd/run-1/m lp;rm -rf ~;$(id).onnx", "--runs", "30", "it's"]
    argv = r.ssh_command([*r.python_argv, *nasty])
    assert argv[0] == "ssh" and argv[-3:-1] == ["--", "nvidia@10.0.0.7"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-i") + 1] == str(tmp_path / "id_test")
    opts = option_values(argv)
    assert opts["BatchMode"] == "yes" and opts["ConnectTimeout"] == "7" and opts["IdentitiesOnly"] == "yes"
    assert opts["StrictHostKeyChecking"] == "accept-new"
    assert opts["UserKnownHostsFile"] == f'"{(tmp_path / "state dir" / "known_hosts").resolve()}"'
    # the remote shell sees exactly these words, nothing more: python split like a shell, every word quoted again
    assert shlex.split(argv[-1]) == ["/opt/py", "3/bin/python3", "-X", "utf8", *nasty]


def test_remote_python_with_quotes_keeps_its_words(tmp_path):
    r = runner(tmp_path, remote_python="'/opt/my python/bin/python3' -u")
    assert r.python_argv == ["/opt/my python/bin/python3", "-u"]
    assert shlex.split(r.ssh_command([*r.python_argv, "x"])[-1]) == ["/opt/my python/bin/python3", "-u", "x"]


def test_scp_argv_and_ipv6_target(tmp_path):
    r = runner(tmp_path, host="fe80::1%eth0", user=None, port=22)
    argv = r.scp_command(["/local/a b.onnx"], f"{r._scp_target()}:/tmp/edgekd/run-x/")
    assert argv[:2] == ["scp", "-q"] and argv[argv.index("-P") + 1] == "22"
    assert argv[-3:] == ["--", "/local/a b.onnx", "[fe80::1%eth0]:/tmp/edgekd/run-x/"]
    assert option_values(argv)["BatchMode"] == "yes"


def test_measure_args_are_separate_words(tmp_path):
    req = BenchRequest(artifact=Path("a.onnx"), runtime="onnxruntime", inputs=Path("i.npz"), warmup=2, runs=9,
                       threads=4, cores=[4, 5])
    assert req.measure_args("/r/measure.py", "/r/a b.onnx", "/r/i.npz") == [
        "/r/measure.py", "--artifact", "/r/a b.onnx", "--runtime", "onnxruntime", "--inputs", "/r/i.npz",
        "--warmup", "2", "--runs", "9", "--threads", "4", "--cores", "4,5"]


@pytest.mark.parametrize("field,value,message", [
    ("host", "-oProxyCommand=touch x", "not a valid host"),
    ("host", "a b", "not a valid host"),
    ("user", "root;id", "not a valid user"),
    ("port", 70000, "port out of range"),
    ("remote_dir", "relative/dir", "remote_dir must be an absolute path"),
    ("remote_dir", "/tmp/$(id)", "remote_dir must be an absolute path"),
    ("remote_dir", "/tmp/../etc", "remote_dir must be an absolute path"),
    ("remote_python", "", "remote_python is empty"),
    ("remote_python", "'unterminated", "remote_python is not a valid command line"),
])
def test_bad_runner_settings_are_refused_before_anything_runs(tmp_path, field, value, message):
    with pytest.raises(EdgekdError, match=message) as err:
        runner(tmp_path, **{field: value})
    assert err.value.code == 2


def test_missing_key_file_names_the_file(tmp_path):
    from edgekd.bench.ssh import SshRunner

    with pytest.raises(EdgekdError, match="ssh key file not found") as err:
        SshRunner(host="h", known_hosts=tmp_path / "kh", key=str(tmp_path / "nope"))
    assert err.value.file == str(tmp_path / "nope") and err.value.key == "runner.key"
