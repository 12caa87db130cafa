"""The Jetson bench path over a real sshd on 127.0.0.1: a TensorRT artifact is copied over, trtexec is called on
the "board" with --loadEngine and the shapes of the run's inputs, its summary is parsed into latency_ms, and the
remote folder is removed.

TensorRT cannot be installed here, so the remote "trtexec" is a replay: a shell script that records its argv and
prints a real trtexec log (NVIDIA's cookbook, tests/data). What is tested is edgekd's side -- ssh/scp, the command
line, parsing, cleanup -- not TensorRT; the report of a real run says the engine was not timed here."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.runner import BenchRequest
from edgekd.bench.ssh import SshRunner
from tests.sshd_support import sshd  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data"


def test_trtexec_load_engine_over_ssh(sshd, tmp_path):  # noqa: F811
    argv_file = tmp_path / "argv.txt"
    replay = tmp_path / "trtexec"
    replay.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(argv_file))}\n"
                      f"tail -n +2 {shlex.quote(str(DATA / 'trtexec_onnx_trt10.txt'))}\n")
    replay.chmod(0o755)
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"serialized engine bytes")
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, __order__=np.array(["image"]), image=np.zeros((1, 3, 224, 224), np.float32))
    remote = tmp_path / "remote"
    runner = SshRunner(host=sshd.host, port=sshd.port, user=sshd.user, key=str(sshd.key),
                       known_hosts=tmp_path / "known_hosts", remote_dir=str(remote), binary=str(replay))
    result = runner.measure(BenchRequest(artifact=engine, runtime="tensorrt", inputs=inputs, warmup=2, runs=50))
    assert result["latency_ms"]["p50"] == 0.0386963 and result["latency_ms"]["p90"] == 0.0480957
    assert result["throughput_qps"] == 18392.0 and result["gpu_compute_ms"]["median"] == 0.0297852
    args = argv_file.read_text().split()
    assert args[0].startswith(f"--loadEngine={remote}/run-") and args[0].endswith("/model.int8.engine")
    assert "--iterations=50" in args and "--shapes=image:1x3x224x224" in args
    assert list(remote.iterdir()) == []  # the run folder was removed
