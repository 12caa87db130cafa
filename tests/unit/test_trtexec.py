"""trtexec: the build command follows the precision plan and the profile's shapes; the output parser reads real
trtexec logs (NVIDIA's TensorRT cookbook, saved under tests/data with their source URL)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from edgekd.bench.trtexec import (bench_result, build_flags_beside, parse_trtexec_output, trtexec_time_argv)
from edgekd.config.schema import Profile
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError
from edgekd.export.tensorrt import (optimization_shapes, tensorrt_dynamic_axes, trtexec_build_argv,
                                    write_trtexec_script)

DATA = Path(__file__).resolve().parents[1] / "data"


def test_parser_reads_real_trtexec_summary():
    text = (DATA / "trtexec_onnx_trt10.txt").read_text()
    assert text.startswith("# source: https://github.com/NVIDIA/")
    got = parse_trtexec_output(text)
    assert got["throughput_qps"] == 18392.0
    assert got["latency_ms"] == {"min": 0.0334473, "max": 0.882324, "mean": 0.0431899, "median": 0.0386963,
                                 "p50": 0.0386963, "p90": 0.0480957, "p95": 0.0548096, "p99": 0.144043}
    assert got["gpu_compute_ms"]["median"] == 0.0297852 and got["gpu_compute_ms"]["p99"] == 0.0952148
    assert got["total_gpu_compute_s"] == 1.84486 and got["tensorrt_version"] == "10.16.0"
    assert got["status"] == "passed" and got["device"] == "NVIDIA RTX 6000 Ada Generation"
    result = bench_result(got, batch=1)
    assert result["latency_ms"]["p50"] == 0.0386963 and result["latency_ms"]["p90"] == 0.0480957
    assert "peak_rss_mb" in result["not_measured"]


def test_parser_explains_a_log_without_summary():
    text = (DATA / "trtexec_loadengine_profile_trt10.txt").read_text()
    with pytest.raises(EdgekdError, match="--dumpProfile"):
        parse_trtexec_output(text)
    with pytest.raises(EdgekdError, match="FAILED"):
        parse_trtexec_output("&&&& FAILED TensorRT.trtexec [TensorRT v8502] # trtexec --loadEngine=x.engine")


def _bundle():
    return ModelBundle("m", "sentence-embedding", torch.nn.Identity(),
                       (torch.zeros(1, 64, dtype=torch.long), torch.ones(1, 64, dtype=torch.long)),
                       ["input_ids", "attention_mask"], ["embedding"],
                       dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "embedding": {0: "batch"}})


def _profile(**shapes):
    return Profile(name="p", backend="tensorrt", batch_sizes=[1, 8],
                   tensorrt={"opset": 18, "workspace_mb": 512, "shapes": shapes})


def test_shapes_from_profile_make_sequence_axis_dynamic():
    rng = {"min": [1, 16], "opt": [1, 64], "max": [8, 128]}
    profile = _profile(input_ids=rng, attention_mask=rng)
    shapes = optimization_shapes(_bundle(), profile)
    assert shapes["input_ids"] == {**rng, "source": "profile"}
    axes = tensorrt_dynamic_axes(_bundle(), profile)
    assert axes["input_ids"] == {0: "batch", 1: "dim1"} and axes["attention_mask"] == {0: "batch", 1: "dim1"}
    derived = optimization_shapes(_bundle(), _profile())
    assert derived["input_ids"] == {"min": [1, 64], "opt": [1, 64], "max": [8, 64], "source": "derived"}


def test_trtexec_command_follows_the_plan(tmp_path):
    shapes = optimization_shapes(_bundle(), _profile())
    plan = {"node_linear_3": "fp16", "node_conv2d": "fp32"}
    argv = trtexec_build_argv("m.int8.onnx", "m.int8.engine", shapes, plan, workspace_mb=512)
    assert argv[:5] == ["trtexec", "--onnx=m.int8.onnx", "--saveEngine=m.int8.engine", "--int8", "--fp16"]
    assert "--precisionConstraints=obey" in argv
    assert "--layerPrecisions=node_conv2d:fp32,node_linear_3:fp16" in argv
    assert "--minShapes=input_ids:1x64,attention_mask:1x64" in argv
    assert "--maxShapes=input_ids:8x64,attention_mask:8x64" in argv
    assert "--timingCacheFile=timing.cache" in argv and "--memPoolSize=workspace:512M" in argv
    no_plan = trtexec_build_argv("m.onnx", "m.engine", shapes, {})
    assert not any(a.startswith(("--precisionConstraints", "--layerPrecisions")) for a in no_plan)
    with pytest.raises(EdgekdError, match="fp16 or fp32"):
        trtexec_build_argv("m.onnx", "m.engine", shapes, {"x": "int4"})
    # the script runs the same command, and a board build reuses its flags
    script = write_trtexec_script(tmp_path / "trtexec.sh", argv, "note")
    text = script.read_text()
    assert text.startswith("#!/bin/sh") and script.stat().st_mode & 0o111
    line = " ".join(text.split('"$TRTEXEC" ', 1)[1].replace("\\\n", " ").split())
    assert shlex.split(line) == argv[1:]
    flags = build_flags_beside(tmp_path / "m.int8.onnx")
    assert "--layerPrecisions=node_conv2d:fp32,node_linear_3:fp16" in flags
    assert not any(f.startswith(("--onnx=", "--saveEngine=", "--skipInference", "--timingCacheFile")) for f in flags)
    timed = trtexec_time_argv("/usr/src/tensorrt/bin/trtexec", "/tmp/r/m.int8.onnx", runs=20, build_flags=flags,
                              shapes={"input_ids": [1, 64]})
    assert timed[1] == "--onnx=/tmp/r/m.int8.onnx" and "--iterations=20" in timed
    assert "--shapes=input_ids:1x64" in timed
    engine = trtexec_time_argv("trtexec", "/tmp/r/m.engine")
    assert engine[1] == "--loadEngine=/tmp/r/m.engine" and "--int8" not in engine
