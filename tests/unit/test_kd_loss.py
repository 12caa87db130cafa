"""KD loss, schedules and hidden-state matching, checked against the formulas they implement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.config.schema import HiddenPair
from edgekd.train import hidden
from edgekd.train.loss import embedding_loss, kd_loss
from edgekd.train.schedules import lr_factor, temperature_at


def test_kd_loss_matches_the_formula():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    alpha, temp = 0.3, 2.5
    total, kd, ce = kd_loss(s, t, y, alpha, temp)
    p = F.softmax(t / temp, -1)
    kl = (p * (p.log() - F.log_softmax(s / temp, -1))).sum(-1).mean()
    assert kd.item() == pytest.approx(alpha * temp ** 2 * kl.item(), rel=1e-5)
    assert ce.item() == pytest.approx((1 - alpha) * F.cross_entropy(s, y).item(), rel=1e-5)
    assert total.item() == pytest.approx(kd.item() + ce.item(), rel=1e-6)


def test_kd_term_vanishes_when_student_equals_teacher_and_labels_absent_give_pure_kd():
    logits = torch.randn(4, 5)
    total, kd, ce = kd_loss(logits, logits.clone(), torch.zeros(4, dtype=torch.long), 0.5, 4.0)
    assert abs(kd.item()) < 1e-6 and ce.item() > 0
    total, kd, ce = kd_loss(torch.randn(4, 5), logits, None, 0.5, 3.0)
    assert ce.item() == 0 and total.item() == pytest.approx(kd.item()) and kd.item() > 0


def test_kd_gradient_scale_is_kept_by_t_squared():
    """Hinton's T^2 factor: the soft-target gradient keeps its size as T grows.

    d/ds [T^2 KL(p_t || q_s)] = T (q_s - p_t) and q_s - p_t ~ (s - t) / (K T) for T well above the logit spread, so the
    gradient is independent of T; without T^2 it would shrink by 1/T^2 (a factor 4 from T=4 to T=8).
    """
    torch.manual_seed(1)
    t = torch.randn(64, 10) * 0.5
    s0 = torch.randn(64, 10) * 0.5
    grads = []
    for temp in (4.0, 8.0):
        s = s0.clone().requires_grad_()
        kd_loss(s, t, None, 1.0, temp)[0].backward()
        grads.append(s.grad.norm().item())
    assert grads[0] == pytest.approx(grads[1], rel=0.05)
    unscaled = [g / temp**2 for g, temp in zip(grads, (4.0, 8.0))]
    assert unscaled[0] / unscaled[1] == pytest.approx(4.0, rel=0.05)


def test_embedding_losses():
    a = torch.randn(3, 8)
    assert embedding_loss(a, a * 2, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_loss(a, a * 2, "mse").item() > 0
    assert embedding_loss(a, -a, "cosine").item() == pytest.approx(2.0, abs=1e-5)


def test_temperature_schedules():
    assert temperature_at(0, 100, 4.0, 1.0, "constant") == 4.0
    assert temperature_at(0, 101, 4.0, 1.0, "linear") == 4.0
    assert temperature_at(50, 101, 4.0, 1.0, "linear") == pytest.approx(2.5)
    assert temperature_at(100, 101, 4.0, 1.0, "linear") == pytest.approx(1.0)


def test_lr_schedules_with_warmup():
    assert [lr_factor(s, 100, "constant", 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 104, "cosine", 4) == pytest.approx(1.0)
    assert lr_factor(54, 104, "cosine", 4) == pytest.approx(0.5)
    assert lr_factor(104, 104, "cosine", 4) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(54, 104, "linear", 4) == pytest.approx(0.5)
    assert lr_factor(0, 10, "cosine", 0) == pytest.approx(1.0) and math.isfinite(lr_factor(9, 10, "linear", 0))


class Tiny(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1, stride=2)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_hidden_matching_projects_widths_and_trains_only_outside_the_student():
    torch.manual_seed(0)
    student, teacher = Tiny(4), Tiny(12)
    teacher.conv.stride = (1, 1)  # different spatial size too: the student map is pooled to the teacher's
    x = torch.randn(2, 1, 8, 8)
    match = hidden.attach(student, teacher, [HiddenPair(student="conv", teacher="conv")], 2.0, (x,))
    assert isinstance(match.projections[0], nn.Linear)
    assert match.projections[0].in_features == 4 and match.projections[0].out_features == 12
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with torch.no_grad():
        teacher(x)
    student(x)
    loss = hidden.hidden_loss(match)
    assert loss.item() > 0
    loss.backward()
    assert match.projections[0].weight.grad is not None and student.conv.weight.grad is not None
    assert teacher.conv.weight.grad is None
    assert set(student.state_dict()) == set(before)  # the projection is not part of the exported student
    hidden.detach_hooks(match)
    student(x)
    assert not match.student_out


def test_hidden_matching_names_the_bad_key():
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError) as err:
        hidden.attach(Tiny(4), Tiny(4), [HiddenPair(student="nope", teacher="conv")], 1.0,
                      (torch.randn(1, 1, 8, 8),), key="stages.distill.hidden.pairs")
    assert err.value.key == "stages.distill.hidden.pairs[0].student" and "conv" in err.value.hint
