"""Acceptance of the foundation on the real students, through the `edgekd` command a user types.

- EfficientNet-Lite0 (ImageNet weights) for snapdragon865: the int8 .pte is at most 30% of the fp32 .pte and agrees
  with fp32 on top-1 for >= 95% of >= 64 held-out crops of real photos, measured in the ExecuTorch runtime.
- all-MiniLM-L6-v2 for x86-cpu: the int8 ONNX gives sentence embeddings with cosine >= 0.98 against fp32 PyTorch on
  real sentences, measured in onnxruntime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def export(tmp_path: Path, profile: str, recipe: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    edgekd = str(Path(sys.executable).with_name("edgekd"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([edgekd, "export", "--profile", profile, "--recipe", str(ROOT / recipe),
                           "--out", str(tmp_path), *extra], capture_output=True, text=True, timeout=1800, cwd=ROOT,
                          env=env)
    folders = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "manifest.json").exists()]
    assert len(folders) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((folders[0] / "manifest.json").read_text()), folders[0]


def test_efficientnet_lite0_pte_is_small_and_agrees_with_fp32(tmp_path):
    proc, manifest, folder = export(tmp_path, "snapdragon865", "recipes/efficientnet_lite0/ptq_int8.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ptes = {a["precision"]: a for a in manifest["artifacts"] if a["format"] == "pte"}
    fp32, quantized = ptes.pop("fp32"), next(iter(ptes.values()))
    assert quantized["bytes"] <= 0.30 * fp32["bytes"], (quantized["bytes"], fp32["bytes"])
    assert quantized["parity"]["samples"] >= 64
    assert quantized["parity"]["top1_agreement"] >= 0.95, quantized["parity"]
    assert quantized["details"]["delegate"] == "XnnpackBackend" and quantized["details"]["delegated_ops"] > 300
    # both artifacts were executed in their runtimes (verify) and timed by the local runner (bench)
    onnx = [a for a in manifest["artifacts"] if a["format"] == "onnx" and not a["is_reference"]]
    assert onnx and onnx[0]["parity"]["samples"] >= 64
    assert quantized["bench"]["local"]["latency_ms"]["p50"] > 0
    # this host is not the phone: its timings are kept as host timings and the verdict is unverified (issue 16)
    assert "artifact" in proc.stdout and "verdict: unverified" in proc.stdout
    latency = [v for v in quantized["verdicts"] if v["metric"] == "latency_p50_ms"]
    assert latency and latency[0]["status"] == "not measured on the device" and latency[0]["host_value"] > 0
    assert (folder / "report.md").read_text().count("|") > 20


def test_minilm_int8_onnx_embeddings_match_fp32(tmp_path):
    proc, manifest, _ = export(tmp_path, "x86-cpu", "recipes/minilm/ptq_int8.yaml", "--skip", "bench")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (int8,) = [a for a in manifest["artifacts"] if a["format"] == "onnx" and not a["is_reference"]]
    assert int8["precision"] == "int8" and int8["parity"]["samples"] >= 32
    assert int8["parity"]["cosine_mean"] >= 0.98, int8["parity"]
    # embedding tables are quantized too (Gather), not only the linear layers: measured 22.7 of 90.8 MB
    (fp32,) = [a for a in manifest["artifacts"] if a["format"] == "onnx" and a["is_reference"]]
    assert int8["bytes"] <= 0.3 * fp32["bytes"], (int8["bytes"], fp32["bytes"])
    # text ONNX for CPUs: batch and sequence dynamic through quantization; verified on each sentence unpadded
    both_axes = {"0": "batch", "1": "sequence"}
    for artifact in (fp32, int8):
        assert artifact["details"]["dynamic_axes"] == {"input_ids": both_axes, "attention_mask": both_axes}
        real = artifact["parity"]["real_lengths"]
        assert real["samples"] >= 32 and real["mean_tokens"] < 64 and real["cosine_mean"] >= 0.98, real
    # x86-cpu declares isa avx512-vnni: full-range s8 weights (no reduce_range)
    assert int8["details"]["isa"] == "avx512-vnni" and int8["details"]["format"] == "U8S8", int8["details"]
    # onnxruntime graph passes (edgekd/export/ort_graph.py): attention fused before quantization, residual adds as Sum
    passes = fp32["details"]["graph_passes"]
    assert passes["ort-attention-fusion"]["fused"] == {"Attention": 6, "BiasGelu": 6}, passes
    assert passes["ort-unfused-layernorm"]["residual_adds_as_sum"] == 13, passes
    assert int8["details"]["ops"]["QAttention"] == 6 and "Softmax" not in int8["details"]["ops"], int8["details"]["ops"]


@pytest.mark.heavy  # ~3.5 min; the ISA -> format rule is in `make test` via tests/unit/test_onnx_isa_formats.py
def test_efficientnet_lite0_x86_int8_onnx_is_u8s8_qdq_with_both_parities(tmp_path):
    proc, manifest, _ = export(tmp_path, "x86-cpu", "recipes/efficientnet_lite0/ptq_int8.yaml", "--skip", "bench")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (int8,) = [a for a in manifest["artifacts"] if a["format"] == "onnx" and not a["is_reference"]]
    assert int8["details"]["format"] == "U8S8" and int8["details"]["mode"] == "ort_static", int8["details"]
    # parity in both the deployed session and Q/DQ executed as written. Measured on AVX-512 VNNI: top-1 0.969
    # deployed, 0.979 exact on 96 crops (verify gates on exact where the host lacks VNNI)
    assert int8["parity"]["top1_agreement"] >= 0.95 and int8["parity"]["exact_qdq"]["top1_agreement"] >= 0.95
