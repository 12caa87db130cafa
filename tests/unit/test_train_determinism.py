"""Reproducible training (src/edgekd/train/replicas.py `reproducible`): the same seed, settings, thread count and
host give bit-identical weights, for fp32 KD and for PT2E QAT+KD alike, and the caller's torch settings are restored."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekd.config.schema import DistillStage
from edgekd.context import Split
from edgekd.models.builtin import DigitsCNN
from edgekd.stages import qat
from edgekd.train.loop import train_kd

from ..kd_support import digits_splits, make_context


def _data():
    data = digits_splits(n_eval=64, n_cal=16)
    data.train = Split(data.train.inputs[:256], labels=data.train.labels[:256])
    return data


def _distilled(data, teacher, tmp, threads):
    torch.manual_seed(0)
    student = DigitsCNN(4)
    cfg = DistillStage(epochs=2, batch_size=32, lr=5e-3, seed=7, threads=threads, warmup_steps=2,
                       temperature={"start": 4.0, "end": 2.0, "schedule": "linear"})
    result = train_kd(student, teacher, data.train, data.eval, cfg, task="image-classification", stage="distill",
                      ckpt_dir=tmp, device=torch.device("cpu"), resume=False,
                      example_inputs=(torch.zeros(1, 1, 8, 8),), quiet=True)
    return student.state_dict(), result


def test_a_rerun_gives_bit_identical_weights_and_restores_the_callers_settings(tmp_path):
    data = _data()
    torch.manual_seed(1)
    teacher = DigitsCNN(8).eval()
    threads_before = torch.get_num_threads()
    first, result = _distilled(data, teacher, tmp_path / "a", threads=2)
    second, _ = _distilled(data, teacher, tmp_path / "b", threads=2)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert any("deterministic algorithms on, 2 intra-op thread(s)" in n for n in result.notes)
    assert torch.get_num_threads() == threads_before
    assert not torch.are_deterministic_algorithms_enabled()
    # a different seed really trains differently (the check above is not vacuous)
    torch.manual_seed(0)
    other = DigitsCNN(4)
    train_kd(other, teacher, data.train, data.eval, DistillStage(epochs=2, batch_size=32, lr=5e-3, seed=8, threads=2),
             task="image-classification", stage="distill", ckpt_dir=tmp_path / "c", device=torch.device("cpu"),
             resume=False, example_inputs=(torch.zeros(1, 1, 8, 8),), quiet=True)
    assert any(not torch.equal(first[k], v) for k, v in other.state_dict().items())


@pytest.mark.slow  # two PT2E exports + QAT: about a minute on 2 idle cores
def test_qat_kd_reruns_give_the_same_converted_weights(tmp_path):
    data = _data()
    torch.manual_seed(1)
    teacher = DigitsCNN(8).eval()
    torch.manual_seed(0)
    student = DigitsCNN(4).eval()
    states = []
    for run in ("a", "b"):
        ctx = make_context(tmp_path / run, {"qat": {"epochs": 2, "batch_size": 32, "lr": 1e-3, "seed": 3,
                                                     "threads": 1, "ptq_baseline": False}},
                           copy.deepcopy(student), teacher, data)
        ctx = qat.run(ctx, ctx.recipe.stages.qat)
        states.append({k: v for k, v in ctx.quantized.state_dict().items() if isinstance(v, torch.Tensor)})
    assert states[0].keys() == states[1].keys() and states[0]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
