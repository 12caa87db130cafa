"""qat: PT2E quantization-aware training with the teacher's soft targets, then convert (ctx.quantized).

Causal LMs (task causal-lm) dispatch to edgekd.llm.qat: torchao 8da4w fake quantization trained with token-level KD,
the trained fp32 weights then exported by the LLM export path (no PT2E graph).

The quantizer is the profile backend's (XNNPACK config for ExecuTorch/onnxruntime, symmetric zero-point-0
activations for TensorRT), with `is_qat=True`: static activation ranges, which QAT learns (a dynamically
quantized PT2E graph does not export to ONNX). Tensors no int8 grid can hold (an encoder's additive attention mask,
-3.4e38) get no fake-quant: they are found on a calibrated copy before the first step, as PTQ drops them after
calibration. Training uses the same KD loss as distill. Observers are frozen and BatchNorm switched to running
statistics for the last epoch(s), as torchao's QAT tutorial recommends, so the scales and the folded weights stop
moving before convert. Evaluation during training never updates observers.

BatchNorm folding, and why training and export agree:
- In the default pipeline the fuse stage has already folded BN into the preceding Conv (running statistics) before
  QAT. QAT then trains the folded weight and bias directly: the fake-quantized weight seen in training *is* the
  weight that convert quantizes and export writes.
- With `stages.fuse.enabled: false` the student still has BN; PT2E QAT rewrites each Conv+BN into its simulated-fold
  pattern (weights scaled by gamma / sqrt(running_var + eps) before fake-quant) and convert folds BN for real.
  With BN frozen at the end this is the same arithmetic.
Both paths are tested numerically (tests/integration/test_qat_digits.py: fake-quant model in eval mode vs converted
model, and converted model vs .pte). Weights are fake-quantized on the grid convert writes (edgekd/quant/pt2e.py
weights_trained_on_the_converted_grid; tests/unit/test_qat_converted_grid.py). The scales in ctx.quantized are the
learned ones: export takes ctx.quantized as is, nothing is recalibrated (tested by finding the learned activation
scales, recorded in the manifest as metrics.qat.learned_activation_scales, in the converted graph and as
QuantizeLinear scales of the ONNX).

With `ptq_baseline` (default on) the same fp32 student is also PTQ-calibrated and exported as reference artifacts
(precision "int8-ptq", never gated), so the report shows fp32 / PTQ / QAT+KD side by side in each runtime.
"""

from __future__ import annotations

import copy
import time

import torch

from edgekd.context import Context
from edgekd.quant import pt2e
from edgekd.stages.ptq import (
    activation_mode,
    float_layers,
    quantize,
    record_quantizer_decisions,
    record_unrepresentable,
)
from edgekd.train.loop import resolve_device, train_kd
from edgekd.train.support import check_teacher_config, check_teacher_matches, checkpoint_dir, record

BN_TARGETS = ("aten.batch_norm.default", "aten._native_batch_norm_legit.default", "aten.cudnn_batch_norm.default")


def check(ctx: Context, cfg) -> None:
    """The task's QAT check (edgekd/tasks.py); causal LMs train torchao 8da4w fake quantization (edgekd.llm.qat)."""
    ctx.task_record.part("qat_check")(ctx, cfg)


def check_pt2e(ctx: Context, cfg) -> None:
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


def prepare_qat(ctx: Context, cfg, dynamic: bool = False):
    """Quantizer for the profile backend, QAT-prepared graph of a copy of the student (the fp32 one stays intact),
    without fake-quants on tensors no int8 grid can hold (an additive attention mask), found on a probe copy.
    `dynamic`: only the Linear inputs are fake-quantized, per sample (edgekd/quant/dynamic_text.py)."""
    skip = ctx.float_layers = float_layers(ctx)
    quantizer = pt2e.make_quantizer(ctx.profile.backend, qat=True, per_channel=cfg.per_channel, skip_modules=skip,
                                    dynamic=dynamic)
    student = copy.deepcopy(ctx.model.module).eval()
    prepared = prepare_dynamic_batch(student, ctx.model.example_inputs, quantizer)
    record_unrepresentable(ctx, "qat", pt2e.drop_unrepresentable_before_training(prepared,
                                                                                 ctx.data.calibration.inputs))
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


def learned_activation_scales(prepared: torch.fx.GraphModule) -> dict[str, list[float]]:
    """{fake-quant module: [scale, zero_point]} of every per-tensor fake-quant (activations) at the end of training.

    These are the numbers convert_pt2e bakes into quantize_per_tensor / dequantize_per_tensor, and therefore into the
    .pte and the QuantizeLinear scales of the ONNX; tests/integration/test_qat_digits.py checks exactly that.
    """
    found = {}
    for name, module in prepared.named_modules():
        if not hasattr(module, "fake_quant_enabled") or getattr(module, "ch_axis", -1) >= 0:
            continue  # per-channel weight fake-quants are checked through the weights themselves
        # convert_pt2e asks each fake-quant for calculate_qparams() (its observer's running min/max after training);
        # the fused training kernel's cached `scale` can differ from it in the last float bit for asymmetric specs.
        scale, zero_point = module.calculate_qparams()
        if scale.numel() == 1:
            found[name] = [float(scale), int(zero_point)]
    return found


def ptq_baseline(ctx: Context, cfg, skip: list[str], dynamic: bool = False) -> list[str]:
    """The same fp32 student quantized by plain PTQ (calibration split), exported in the same formats as reference
    artifacts, so verify measures fp32, PTQ and QAT+KD side by side in each runtime. Never gated: only a baseline.
    `dynamic`: the same dynamic scheme as the QAT artifacts (the ONNX by onnxruntime's dynamic quantizer)."""
    from edgekd.backends import FORMAT_RUNTIME
    from edgekd.context import Artifact
    from edgekd.report.atomic import sha256_of

    export_cfg = ctx.recipe.stages.export
    formats = [f for f in (export_cfg.formats or ctx.backend.formats) if f in ("pte", "onnx")]
    # dropped observers: the same tensors the QAT graph keeps float (recorded by prepare_qat)
    converted, _, count, _ = quantize(ctx, ctx.model.module, cfg, skip, dynamic)
    written = []
    for fmt in formats:
        path = ctx.out_dir / f"{ctx.model.name}.int8-ptq-baseline.{fmt}"
        if fmt == "pte":
            from edgekd.export.executorch import export_pte

            details = export_pte(converted, ctx.model.example_inputs, path)
        elif dynamic:
            from edgekd.export.onnx import export_dynamic_int8

            details = export_dynamic_int8(ctx.model.module, ctx.model, path, export_cfg.opset, ctx.profile.isa)
        else:
            from edgekd.export.qdq_onnx import export_qdq_onnx

            details = export_qdq_onnx(converted, ctx.model.example_inputs, path, input_names=ctx.model.input_names,
                                      output_names=ctx.model.output_names, dynamic_axes=ctx.model.dynamic_axes,
                                      opset=ctx.profile.tensorrt.opset if ctx.profile.tensorrt else export_cfg.opset,
                                      lint=False, polygraphy=False, activation_type=ctx.backend.qdq_activation_type)
            details["mode"] = "pt2e"
        details.update(role="baseline", calibration_samples=count)
        ctx.artifacts.append(Artifact(name=path.name, path=path, format=fmt, runtime=FORMAT_RUNTIME[fmt],
                                      precision="int8-ptq", bytes=path.stat().st_size, sha256=sha256_of(path),
                                      is_reference=True, details=details))
        written.append(path.name)
    ctx.decide("qat", "PTQ baseline", f"exported ({', '.join(written)})",
               f"the same fp32 student calibrated on {count} samples, to show what QAT+KD adds; not gated")
    return written


def run(ctx: Context, cfg) -> Context:
    return ctx.task_record.part("qat")(ctx, cfg)


def run_pt2e(ctx: Context, cfg) -> Context:
    check_teacher_matches(ctx, "qat")
    started = time.perf_counter()
    device = resolve_device(cfg.device, ctx.device)
    if ctx.reference is None:
        ctx.reference = copy.deepcopy(ctx.model.module).eval()
    bn_in_graph = has_batchnorm(ctx.model.module)
    dynamic = activation_mode(ctx, cfg) == "dynamic"
    prepared, quantizer, skip = prepare_qat(ctx, cfg, dynamic)
    baseline = ptq_baseline(ctx, cfg, skip, dynamic) if cfg.ptq_baseline else []
    obs_at, bn_at = freeze_epochs(cfg)
    result = train_kd(prepared, ctx.teacher.module, ctx.data.train, ctx.data.eval, cfg, task=ctx.model.task,
                      stage="qat", ckpt_dir=checkpoint_dir(ctx, "qat"), device=device, resume=ctx.resume,
                      example_inputs=ctx.model.example_inputs, set_mode=qat_mode(obs_at, bn_at),
                      progress=ctx.progress)
    prepared.to("cpu")
    ctx.teacher.module.to("cpu")
    scales = learned_activation_scales(prepared)
    if dynamic:
        convert_dynamic(ctx, cfg, prepared, skip)
    else:
        ctx.quantized = pt2e.convert(prepared)
    record_quantizer_decisions(ctx, "qat", quantizer, skip)
    ctx.decide("qat", "batch norm", "simulated fold during QAT, folded at convert" if bn_in_graph
               else "already folded before QAT (fuse stage)",
               "the weights fake-quantized in training are the ones exported")
    if not dynamic:  # dynamic activations have no scale to learn (convert_dynamic records what it did)
        ctx.decide("qat", "scales", "learned in training, exported as is",
                   f"{len(scales)} activation scales from the fake-quant observers; nothing recalibrated after "
                   "training")
    if obs_at is None:
        ctx.decide("qat", "observers", "never frozen", "one epoch: the scales are learned throughout")
    record(ctx, "qat", result, cfg, {
        "device": str(device), "quantizer": ctx.backend.quantizer,
        "per_channel": cfg.per_channel, "float_layers": skip, "freeze_observers_epoch": obs_at,
        "freeze_bn_epoch": bn_at, "bn_in_graph": bn_in_graph, "learned_activation_scales": scales,
        "activations": "dynamic" if dynamic else "static",
        "ptq_baseline_artifacts": baseline, "total_seconds": time.perf_counter() - started})
    return ctx


def convert_dynamic(ctx: Context, cfg, prepared: torch.fx.GraphModule, skip: list[str]) -> None:
    """Dynamic QAT's convert: the trained float weights, quantized like dynamic PTQ (torchao cannot convert a
    dynamic fake-quant; edgekd/quant/dynamic_text.py). ctx.quantized_float keeps them for the ONNX writer."""
    from edgekd.quant.dynamic_text import trained_float_copy

    trained = trained_float_copy(prepared, ctx.model.module)
    ctx.quantized, quantizer, _, _ = quantize(ctx, trained, cfg, skip, dynamic=True)
    ctx.quantized_float = trained
    ctx.decide("qat", "activations", "fake-quantized per sample in training, quantized per call in the artifacts",
               "text encoder on ExecuTorch: a static per-tensor range over the residual stream costs accuracy that "
               "QAT did not win back; dynamic int8 keeps residual adds, LayerNorm and softmax in float")
    ctx.decide("qat", "trained weights", "quantized per channel at convert (dynamic PTQ of the trained weights)",
               "the int8 grid QAT trained against; the ONNX gets them through onnxruntime's dynamic quantizer")
    record_quantizer_decisions(ctx, "qat", quantizer, [])  # the int8 embedding tables
