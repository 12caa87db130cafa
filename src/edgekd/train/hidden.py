"""Hidden-state matching: MSE between chosen student/teacher layer outputs, captured with forward hooks.

When widths differ a learned nn.Linear maps the student's feature axis to the teacher's. The projections are trained
with the student but live outside it (they are never part of the exported model); they are saved in checkpoints so
a resumed run continues them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import EdgekdError


@dataclass
class HiddenMatch:
    pairs: list[tuple[str, str]]
    weight: float
    projections: nn.ModuleList
    student_out: dict[int, torch.Tensor] = field(default_factory=dict)
    teacher_out: dict[int, torch.Tensor] = field(default_factory=dict)
    handles: list = field(default_factory=list)


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]  # HF layers return (hidden_states, attentions, ...)
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    raise TypeError(f"cannot match a module output of type {type(output).__name__}")


def _feature_last(x: torch.Tensor) -> torch.Tensor:
    """Put the feature axis last: NCHW conv maps become (N, H, W, C); (N, L, D) and (N, D) are already so."""
    return x.movedim(1, -1) if x.dim() == 4 else x


def _module(root: nn.Module, name: str, key: str) -> nn.Module:
    try:
        return root.get_submodule(name)
    except AttributeError as exc:
        names = [n for n, _ in root.named_modules() if n]
        close = [n for n in names if name.split(".")[-1] in n][:8] or names[:8]
        raise EdgekdError(f"no module named {name!r}", key=key, hint=f"e.g. {', '.join(close)}") from exc


def attach(student: nn.Module, teacher: nn.Module, pairs, weight: float, example_inputs: tuple,
           key: str = "stages.distill.hidden.pairs") -> HiddenMatch:
    """Hook every pair, run the example input once to learn the shapes, and build the projections."""
    resolved = []
    for i, pair in enumerate(pairs):
        resolved.append((pair.student, pair.teacher,
                         _module(student, pair.student, f"{key}[{i}].student"),
                         _module(teacher, pair.teacher, f"{key}[{i}].teacher")))
    match = HiddenMatch(pairs=[(s, t) for s, t, _, _ in resolved], weight=weight, projections=nn.ModuleList())
    for i, (_, _, s_mod, t_mod) in enumerate(resolved):
        match.handles.append(s_mod.register_forward_hook(_store(match.student_out, i)))
        match.handles.append(t_mod.register_forward_hook(_store(match.teacher_out, i, detach=True)))
    with torch.no_grad():
        student(*example_inputs)
        teacher(*example_inputs)
    for i, (s_name, t_name, _, _) in enumerate(resolved):
        s, t = _feature_last(match.student_out[i]), _feature_last(match.teacher_out[i])
        if s.dim() != t.dim():
            raise EdgekdError(f"{s_name} gives a {s.dim()}-D output and {t_name} a {t.dim()}-D one; they cannot be "
                              "matched", key=f"{key}[{i}]")
        if s.dim() == 3 and s.shape[1] != t.shape[1]:
            raise EdgekdError(f"sequence lengths differ ({s.shape[1]} vs {t.shape[1]})", key=f"{key}[{i}]")
        s_width, t_width = s.shape[-1], t.shape[-1]
        match.projections.append(nn.Identity() if s_width == t_width else nn.Linear(s_width, t_width))
    match.student_out.clear()
    match.teacher_out.clear()
    return match


def _store(bucket: dict, index: int, detach: bool = False):
    def hook(module, args, output):
        value = _first_tensor(output)
        bucket[index] = value.detach() if detach else value
    return hook


def hidden_loss(match: HiddenMatch) -> torch.Tensor:
    """Mean over pairs of MSE(project(student), teacher); conv maps are pooled to the teacher's spatial size."""
    losses = []
    for i, projection in enumerate(match.projections):
        s, t = match.student_out[i], match.teacher_out[i]
        if s.dim() == 4 and s.shape[-2:] != t.shape[-2:]:
            s = F.adaptive_avg_pool2d(s, t.shape[-2:])
        losses.append(F.mse_loss(projection(_feature_last(s).float()), _feature_last(t).float()))
    match.student_out.clear()
    match.teacher_out.clear()
    return match.weight * torch.stack(losses).mean()


def detach_hooks(match: HiddenMatch) -> None:
    for handle in match.handles:
        handle.remove()
    match.handles.clear()


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
