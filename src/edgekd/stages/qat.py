"""qat: PT2E quantization-aware training with the teacher's soft targets, then convert (ctx.quantized).

The quantizer is the profile backend's (XNNPACK config for ExecuTorch/onnxruntime, symmetric zero-point-0
activations for TensorRT), with `is_qat=True`. Training uses the same KD loss as distill. Observers are frozen and
BatchNorm switched to running statistics for the last epoch(s), as torchao's QAT tutorial recommends, so the scales
and the folded weights stop moving before convert. Evaluation during training never updates observers.

BatchNorm folding, and why training and export agree:
- In the default pipeline the fuse stage has already folded BN into the preceding Conv (running statistics) before
  QAT. QAT then trains the folded weight and bias directly: the fake-quantized weight seen in training *is* the
  weight that convert quantizes and export writes.
- With `stages.fuse.enabled: false` the student still has BN; PT2E QAT rewrites each Conv+BN into its simulated-fold
  pattern (weights scaled by gamma / sqrt(running_var + eps) before fake-quant) and convert folds BN for real.
  With BN frozen at the end this is the same arithmetic.
Both paths are tested numerically (tests/integration/test_qat_digits.py: fake-quant model in eval mode vs converted
model, and converted model vs .pte). The scales in ctx.quantized are the learned ones: export takes ctx.quantized
as is, nothing is recalibrated (tested by finding the converted model's scales in the .pte and the ONNX).
"""

from __future__ import annotations

import copy
import time

import torch

from edgekd.context import Context
from edgekd.quant import pt2e
from edgekd.train.loop import resolve_device, train_kd
from edgekd.train.support import check_teacher_config, check_teacher_matches, checkpoint_dir, record

BN_TARGETS = ("aten.batch_norm.default", "aten._native_batch_norm_legit.default", "aten.cudnn_batch_norm.default")


def check(ctx: Context, cfg) -> None:
    check_teacher_config(ctx, "qat")


def freeze_bn(graph: torch.fx.GraphModule) -> int:
    """Make every BN node use its running statistics (training flag off) without stopping weight training."""
    count = 0
    for node in graph.graph.nodes:
        if node.op == "call_function" and str(node.target) in BN_TARGETS and node.args[5] is True:
            args = list(node.args)
            args[5] = False
            node.args = tuple(args)
            count += 1
    if count:
        graph.recompile()
    return count


def qat_mode(freeze_observers_at: int | None, freeze_bn_at: int | None):
    """set_mode for train_kd on a prepared PT2E graph (model.train()/eval() do nothing on exported graphs)."""
    from torchao.quantization.pt2e import (
        disable_observer,
        enable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )

    def set_mode(model: torch.fx.GraphModule, training: bool, epoch: int) -> None:
        if training:
            move_exported_model_to_train(model)
            if freeze_bn_at is not None and epoch >= freeze_bn_at:
                freeze_bn(model)
            observing = freeze_observers_at is None or epoch < freeze_observers_at
            model.apply(enable_observer if observing else disable_observer)
        else:
            move_exported_model_to_eval(model)
            model.apply(disable_observer)  # evaluation must not move the scales

    return set_mode


def freeze_epochs(cfg) -> tuple[int | None, int | None]:
    """Defaults: the last epoch freezes observers and BN; with one epoch nothing is frozen (scales must be seen)."""
    last = cfg.epochs - 1 if cfg.epochs > 1 else None
    obs = cfg.freeze_observers_epoch if cfg.freeze_observers_epoch is not None else last
    bn = cfg.freeze_bn_epoch if cfg.freeze_bn_epoch is not None else last
    return (obs if obs is not None and obs > 0 else None), bn


def has_batchnorm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def prepare_qat(ctx: Context, cfg):
    """Quantizer for the profile backend, QAT-prepared graph of a copy of the student (the fp32 one stays intact)."""
    from edgekd.stages.ptq import float_layers

    skip = float_layers(ctx)
    quantizer = pt2e.make_quantizer(ctx.profile.backend, qat=True, per_channel=cfg.per_channel, skip_modules=skip)
    student = copy.deepcopy(ctx.model.module).eval()
    prepared = prepare_dynamic_batch(student, ctx.model.example_inputs, quantizer)
    return prepared, quantizer, skip


def prepare_dynamic_batch(module: torch.nn.Module, example_inputs: tuple, quantizer) -> torch.fx.GraphModule:
    """Like edgekd.quant.pt2e.prepare(qat=True), but exported with a dynamic batch axis.

    PTQ can calibrate one sample at a time on a batch-1 graph; training needs batches, and the converted model is
    re-exported by the export stage with the batch-1 example (so the artifacts keep their static shapes). The example
    is doubled because torch.export specialises a dimension whose example size is 1.
    """
    from torch.export import Dim
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgekd.errors import EdgekdError

    doubled = tuple(torch.cat([t, t]) for t in example_inputs)
    batch = Dim("batch", min=1, max=1 << 16)
    try:
        exported = torch.export.export(module.eval(), doubled, dynamic_shapes=tuple({0: batch} for _ in doubled),
                                       strict=False)
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types; the user needs the reason
        raise EdgekdError(f"cannot export the student with a dynamic batch axis for QAT: {type(exc).__name__}: "
                          f"{str(exc)[:300]}", key="stages.qat",
                          hint="use stages.ptq instead, or make the model's batch dimension free") from exc
    return prepare_qat_pt2e(exported.module(), quantizer)


def run(ctx: Context, cfg) -> Context:
    check_teacher_matches(ctx, "qat")
    started = time.perf_counter()
    device = resolve_device(cfg.device, ctx.device)
    if ctx.reference is None:
        ctx.reference = copy.deepcopy(ctx.model.module).eval()
    bn_in_graph = has_batchnorm(ctx.model.module)
    prepared, quantizer, skip = prepare_qat(ctx, cfg)
    obs_at, bn_at = freeze_epochs(cfg)
    result = train_kd(prepared, ctx.teacher.module, ctx.data.train, ctx.data.eval, cfg, task=ctx.model.task,
                      stage="qat", ckpt_dir=checkpoint_dir(ctx, "qat"), device=device, resume=ctx.resume,
                      example_inputs=ctx.model.example_inputs, set_mode=qat_mode(obs_at, bn_at),
                      progress=ctx.progress)
    prepared.to("cpu")
    ctx.teacher.module.to("cpu")
    ctx.quantized = pt2e.convert(prepared)
    for name in skip:
        ctx.decide("qat", name, "kept in floating point", "the precision plan assigns it a float precision")
    for node in quantizer.dropped:
        ctx.decide("qat", node, "not quantized", "integer-valued op (index arithmetic); quantizing it breaks the graph")
    ctx.decide("qat", "batch norm", "simulated fold during QAT, folded at convert" if bn_in_graph
               else "already folded before QAT (fuse stage)",
               "the weights fake-quantized in training are the ones exported")
    if obs_at is None:
        ctx.decide("qat", "observers", "never frozen", "one epoch: the scales are learned throughout")
    record(ctx, "qat", result, cfg, {
        "device": str(device), "quantizer": pt2e.BACKEND_QUANTIZER[ctx.profile.backend],
        "per_channel": cfg.per_channel, "float_layers": skip, "freeze_observers_epoch": obs_at,
        "freeze_bn_epoch": bn_at, "bn_in_graph": bn_in_graph, "total_seconds": time.perf_counter() - started})
    return ctx
