"""Calibration runs at one fixed intra-op thread count (src/edgekd/stages/ptq.py CALIBRATION_THREADS), whatever the
process uses, and gives the caller's count back: calibrated ranges are float reductions whose rounding follows the
thread split, and the int8 artifact must be the same file on hosts with different core counts."""

from __future__ import annotations

import torch

from edgekd.models.builtin import DigitsCNN
from edgekd.stages import ptq

from ..kd_support import digits_splits, make_context


def test_calibration_at_the_fixed_thread_count(tmp_path, monkeypatch):
    data = digits_splits(n_eval=16, n_cal=8)
    ctx = make_context(tmp_path, {"ptq": {}}, DigitsCNN(4), DigitsCNN(4), data)
    seen = []
    real = ptq.pt2e.calibrate

    def recording(prepared, samples, progress=None):
        seen.append(torch.get_num_threads())
        return real(prepared, samples, progress=progress)

    monkeypatch.setattr(ptq.pt2e, "calibrate", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        converted, _, count, _ = ptq.quantize(ctx, ctx.model.module, ctx.recipe.stages.ptq, [], dynamic=False)
        assert torch.get_num_threads() == 2  # the caller's count is restored
    finally:
        torch.set_num_threads(before)
    assert seen == [ptq.CALIBRATION_THREADS] and count == 8
    assert converted(*data.eval.inputs[0]).shape == (1, 10)
