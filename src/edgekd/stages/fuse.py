"""fuse: fold BatchNorm into the Conv/Linear before it; report which activations the backend fuses at lowering.

Patterns are found on the torch.export graph (works for any exportable model, no per-model code), then applied to
the eager modules by their exact names, and the fused model is checked numerically against the unfused one.
Activations are not rewritten here: XNNPACK, onnxruntime and TensorRT fuse Conv+ReLU/ReLU6/Clip themselves when
lowering, so the stage records which ones each backend will fuse and which it will not, with the reason.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.context import Context
from edgekd.errors import EdgekdError

CONV_OPS = {"aten.conv2d.default", "aten.conv1d.default", "aten.convolution.default"}
LINEAR_OPS = {"aten.linear.default"}
BN_OPS = {"aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default"}
NORM_OPS = {"aten.layer_norm.default", "aten.group_norm.default"}
# Activations that can follow a Conv/Linear; which of them a backend fuses is its record's `fused_activations`.
ACTIVATION_OPS = {"aten.relu.default", "aten.relu_.default", "aten.hardtanh.default", "aten.hardtanh_.default",
                  "aten.clamp.default", "aten.gelu.default", "aten.silu.default", "aten.sigmoid.default"}


def _module_name(node: torch.fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path.removeprefix("L['self'].").replace("L__self___", "")


def _users(node: torch.fx.Node) -> list[torch.fx.Node]:
    return [u for u in node.users if u.op == "call_function"]


def find_patterns(module: nn.Module, example_inputs: tuple) -> list[dict]:
    """Walk the exported graph: every Conv/Linear with what follows it (norm, activation) and the module names."""
    graph = torch.export.export(module, example_inputs, strict=False).graph
    patterns = []
    for node in graph.nodes:
        target = str(node.target)
        if node.op != "call_function" or target not in CONV_OPS | LINEAR_OPS:
            continue
        users = _users(node)
        entry = {"layer": _module_name(node), "kind": "conv" if target in CONV_OPS else "linear",
                 "norm": None, "norm_module": None, "activation": None, "single_use": len(users) == 1}
        follower = users[0] if len(users) == 1 else None
        if follower is not None and str(follower.target) in BN_OPS | NORM_OPS:
            entry["norm"] = str(follower.target).split(".")[1]
            entry["norm_module"] = _module_name(follower)
            after = _users(follower)
            follower = after[0] if len(after) == 1 else None
        if follower is not None and str(follower.target) in ACTIVATION_OPS:
            entry["activation"] = str(follower.target)
        patterns.append(entry)
    return patterns


def fold_bn(layer: nn.Module, bn: nn.Module) -> None:
    """w' = w * gamma / sqrt(var + eps) per output channel; b' = (b - mean) * gamma / sqrt(var + eps) + beta."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else (
        1.0 / torch.sqrt(bn.running_var + bn.eps))
    shift = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean * scale
    weight = layer.weight.detach()
    shape = [-1] + [1] * (weight.dim() - 1)
    if isinstance(layer, nn.ConvTranspose2d):
        raise ValueError("ConvTranspose folding needs the channel axis swapped; not supported")
    layer.weight = nn.Parameter(weight * scale.reshape(shape))
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.bias = nn.Parameter(bias * scale + shift)


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def run(ctx: Context, cfg) -> Context:
    bundle = ctx.model
    module = bundle.module.eval()
    patterns = find_patterns(module, bundle.example_inputs)
    backend = ctx.profile.backend
    samples = ctx.data.calibration.inputs[:8]
    with torch.no_grad():
        before = [module(*s) for s in samples]
    folded, notes = 0, []
    for p in patterns:
        layer_name, norm_name = p["layer"], p["norm_module"]
        if p["norm"] in ("batch_norm", "_native_batch_norm_legit_no_training"):
            allowed = cfg.conv_bn if p["kind"] == "conv" else cfg.linear_bn
            if not allowed:
                ctx.decide("fuse", layer_name, "not folded", f"{p['kind']}_bn disabled in the recipe")
            elif not p["single_use"]:
                ctx.decide("fuse", layer_name, "not folded", "its output feeds more than the BatchNorm")
            else:
                try:
                    fold_bn(module.get_submodule(layer_name), module.get_submodule(norm_name))
                    _set_submodule(module, norm_name, nn.Identity())
                    folded += 1
                except (AttributeError, ValueError) as exc:
                    ctx.decide("fuse", layer_name, "not folded", str(exc))
        elif p["norm"]:
            ctx.decide("fuse", layer_name, f"{p['norm']} not folded",
                       "its statistics depend on each input, so it cannot be folded into constant weights")
        if p["activation"] and cfg.activations:
            act = p["activation"].split(".")[1]
            if p["activation"] in ctx.backend.fused_activations:
                notes.append(act)
            else:
                ctx.decide("fuse", layer_name, f"{act} not fused",
                           f"{backend} has no fused {p['kind']}+{act} kernel; it runs as a separate op")
    with torch.no_grad():
        after = [module(*s) for s in samples]
    err = max(float((a - b).abs().max()) for a, b in zip(after, before))
    scale = max(float(b.abs().max()) for b in before) or 1.0
    if err > cfg.atol * max(scale, 1.0) * 10:
        raise EdgekdError(f"fused model differs from the unfused one: max abs error {err:.3g} "
                          f"(output scale {scale:.3g}, tolerance {cfg.atol * max(scale, 1.0) * 10:.3g})",
                          key="stages.fuse", hint="disable the failing pattern: stages.fuse.conv_bn=false")
    ctx.metrics["fuse"] = {"layers": len(patterns), "bn_folded": folded,
                           "activations_fused_by_backend": len(notes), "backend": backend,
                           "max_abs_error_vs_unfused": err, "output_scale": scale, "checked_samples": len(samples)}
    return ctx
