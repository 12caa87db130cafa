"""Find and apply a structured pruning plan that removes a target fraction of MACs or parameters.

torch-pruning traces the model once and groups every tensor dimension that must shrink together (a conv's output
channels, the BatchNorm after it, the next conv's input channels, both branches of a residual add, a depthwise conv
and its neighbours), so a pruned network stays a valid network; we only choose how much to cut.

The plan is one ratio: every prunable group loses that fraction of its channels (or, with global pruning, that
fraction of all channels goes where importance is lowest, no layer losing more than `max_ratio`). The ratio is
found by bisection on copies of the model, counting MACs and parameters after each trial cut, so the target is met
with the smallest cut that reaches it. Channel counts are integers, so the reduction reached is usually a little
above the target, and is reported as measured.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from edgekd.errors import EdgekdError

LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BISECTION_STEPS = 14  # ratio resolution 2^-14 of max_ratio: finer than one channel in any real layer


@dataclass
class Settings:
    """What a plan must reach and may touch; built from the recipe's stages.prune by the stage."""

    kind: str  # "macs" or "params"
    target: float  # fraction to remove, in (0, 1)
    importance: str = "l2"  # l1, l2 (weight magnitude) or taylor (|weight x gradient|)
    global_pruning: bool = False
    ignore: list[str] = field(default_factory=list)  # exact module names (already resolved) from the recipe
    heads: list[str] = field(default_factory=list)  # layers producing the model's output (output_layers)
    max_ratio: float = 0.8
    layer_max_ratio: dict[str, float] = field(default_factory=dict)  # exact module name -> cap
    round_to: int | None = None
    key: str = "stages.prune"  # where the settings came from, for error messages


@dataclass
class Plan:
    ratio: float  # the channel ratio the cut uses
    macs: int
    params: int
    reduction: float  # measured fraction of `kind` removed


def resolve_names(module: nn.Module, patterns: list[str], key: str, file: str = "") -> list[str]:
    """Exact module names, then `re:` patterns (full match), as precision plans name layers (rule 7 of
    docs/architecture.md). Every name and pattern must match something; all unknown ones are reported at once."""
    names = [n for n, _ in module.named_modules() if n]
    found: list[str] = []
    unknown: list[str] = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            matched = [n for n in names if re.fullmatch(pattern[3:], n)]
        else:
            matched = [pattern] if pattern in names else []
        if not matched:
            unknown.append(pattern)
        found += [n for n in matched if n not in found]
    if unknown:
        layers = [n for n, m in module.named_modules() if isinstance(m, LAYER_TYPES)]
        shown = ", ".join(layers[:12]) + (f", ... ({len(layers)} in all)" if len(layers) > 12 else "")
        raise EdgekdError(f"no layer named {', '.join(repr(u) for u in unknown)} in the student", file=file, key=key,
                          hint=f"exact module names or re: patterns; Conv/Linear layers: {shown}")
    return found


def output_layers(module: nn.Module, example_inputs: tuple) -> list[str]:
    """Conv/Linear layers whose output is the model's output (the classifier head): pruning their output channels
    would change what the model predicts, so they are always kept whole. Found by identity of the output tensor
    (or a view of it) during one forward pass, so no per-model names are needed (rule 10)."""
    produced: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: produced.__setitem__(name, out))
             for name, m in module.named_modules() if isinstance(m, LAYER_TYPES)]
    try:
        with torch.no_grad():
            out = module.eval()(*example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    storages = {o.untyped_storage().data_ptr() for o in outputs if isinstance(o, torch.Tensor)}
    return [name for name, t in produced.items()
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() in storages]


def count(module: nn.Module, example_inputs: tuple) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on the example inputs, batch 1.

    MACs are those of every Conv/Linear (multiply-accumulates of the layer's output elements; the norms, activations
    and adds are a few percent at most). Counted by isinstance in forward hooks, so subclasses count too:
    torch-pruning's counter maps exact types and misses EfficientNet's Conv2dStaticSamePadding."""
    total = [0]

    def hook(m, inputs, out):
        batch = out.shape[0] if out.dim() > 1 else 1
        if isinstance(m, nn.Linear):
            total[0] += out.numel() // batch * m.in_features
        else:
            per_output = (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
            total[0] += out.numel() // batch * per_output

    hooks = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, LAYER_TYPES)]
    try:
        with torch.no_grad():
            module.eval()(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return int(total[0]), sum(p.numel() for p in module.parameters())


def layer_widths(module: nn.Module) -> dict[str, dict]:
    """{name: type, in and out channels} of every Conv/Linear, for the before/after table."""
    widths = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            widths[name] = {"type": "Linear", "in": m.in_features, "out": m.out_features}
        elif isinstance(m, LAYER_TYPES):
            kind = "Conv (depthwise)" if m.groups > 1 and m.groups == m.in_channels else "Conv"
            widths[name] = {"type": kind, "in": m.in_channels, "out": m.out_channels}
    return widths


def importance(name: str):
    import torch_pruning as tp

    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def taylor_gradients(module: nn.Module, batches: list[tuple[tuple, torch.Tensor]]) -> None:
    """Accumulate the gradients Taylor importance reads (|w * dL/dw| per channel): cross-entropy on `batches`,
    each (inputs, targets); targets are the labels, or the unpruned model's top-1 when the data has none."""
    module.zero_grad()
    module.eval()  # BatchNorm keeps its running statistics: ranking must not change the model
    for inputs, targets in batches:
        loss = nn.functional.cross_entropy(module(*inputs), targets)
        loss.backward()


def _pruner(module: nn.Module, example_inputs: tuple, settings: Settings, ratio: float):
    import torch_pruning as tp

    by_name = dict(module.named_modules())
    caps = {by_name[n]: min(ratio, cap) for n, cap in settings.layer_max_ratio.items()}
    return tp.pruner.MetaPruner(
        module, example_inputs, importance=importance(settings.importance), global_pruning=settings.global_pruning,
        pruning_ratio=ratio, pruning_ratio_dict=caps or None, max_pruning_ratio=settings.max_ratio,
        ignored_layers=[by_name[n] for n in settings.ignore + settings.heads], round_to=settings.round_to)


def _copy_with_grads(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    for p, q in zip(module.parameters(), clone.parameters()):
        q.grad = None if p.grad is None else p.grad.detach().clone()
    return clone


def cut(module: nn.Module, example_inputs: tuple, settings: Settings, ratio: float) -> None:
    """Prune `module` in place at `ratio` (the weights it keeps are its own; gradients for taylor must be set)."""
    module.eval()
    _pruner(module, example_inputs, settings, ratio).step()
    module.zero_grad(set_to_none=True)


def _trial(module: nn.Module, example_inputs: tuple, settings: Settings, ratio: float, base: int) -> Plan:
    clone = _copy_with_grads(module)
    cut(clone, example_inputs, settings, ratio)
    macs, params = count(clone, example_inputs)
    kept = macs if settings.kind == "macs" else params
    return Plan(ratio=ratio, macs=macs, params=params, reduction=1.0 - kept / base)


def search(module: nn.Module, example_inputs: tuple, settings: Settings, file: str = "") -> Plan:
    """The smallest ratio whose cut removes at least `settings.target` of MACs (or parameters), found by
    bisection on copies; `module` is not changed. A target no cut within the caps can reach is bad input."""
    best = reachable(module, example_inputs, settings, file)
    base = count(module, example_inputs)[0 if settings.kind == "macs" else 1]
    lo, hi = 0.0, settings.max_ratio
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        plan = _trial(module, example_inputs, settings, mid, base)
        if plan.reduction >= settings.target:
            hi, best = mid, plan
        else:
            lo = mid
    return best


def reachable(module: nn.Module, example_inputs: tuple, settings: Settings, file: str = "") -> Plan:
    """The cut at every layer's cap: if even that misses the target, no plan can meet it (bad input, exit 2).
    One trial, so the pipeline's prerequisite check can afford it before any training."""
    macs, params = count(module, example_inputs)
    base = macs if settings.kind == "macs" else params
    try:
        best = _trial(module, example_inputs, settings, settings.max_ratio, base)
    except Exception as exc:  # noqa: BLE001 - tracing/grouping fails in many ways; the user needs the reason
        raise EdgekdError(f"torch-pruning cannot prune this student: {type(exc).__name__}: {str(exc)[:300]}",
                          file=file, key=settings.key, hint="ignore the layers it cannot handle, or drop "
                          "stages.prune") from exc
    if best.reduction < settings.target:
        raise EdgekdError(
            f"no pruning plan removes {settings.target:.0%} of the student's {settings.kind}: cutting every prunable "
            f"layer to its cap (max_ratio {settings.max_ratio}) removes {best.reduction:.1%}", file=file,
            key=f"{settings.key}.target.{settings.kind}",
            hint="lower the target, raise max_ratio or layer_max_ratio, or ignore fewer layers")
    return best


def layer_table(before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """One row per Conv/Linear: channels before and after, so the report shows where the cut landed."""
    return [{"layer": name, "type": b["type"], "in_before": b["in"], "in_after": after[name]["in"],
             "out_before": b["out"], "out_after": after[name]["out"]} for name, b in before.items() if name in after]
