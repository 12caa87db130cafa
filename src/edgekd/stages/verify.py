"""verify: run every artifact in its real runtime on held-out real inputs and compare with PyTorch.

Every artifact is compared with the fp32 student (the accuracy budget) and, for int8 artifacts, also with the
converted PT2E model (did the export preserve what PyTorch quantized?). A drop beyond the profile's accuracy_drop
budget is a failed verdict (exit 1).
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd import parity, stats
from edgekd.context import Context
from edgekd.runtime import LOADERS, load_artifact


def torch_outputs(module: torch.nn.Module, samples: list[tuple]) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(*s).detach().numpy() for s in samples])


def run(ctx: Context, cfg) -> Context:
    """The task's verify (edgekd/tasks.py): verify_artifacts below, or the causal LM's perplexity and decoding."""
    return ctx.task_record.part("verify")(ctx, cfg)


def verify_artifacts(ctx: Context, cfg) -> Context:
    samples = ctx.data.eval.inputs
    labels = ctx.data.eval.labels.numpy() if ctx.data.eval.labels is not None else None
    task = ctx.model.task
    reference = torch_outputs(ctx.reference, samples)
    converted = torch_outputs(ctx.quantized, samples) if ctx.quantized is not None else None
    ctx.metrics["verify"] = {"samples": len(samples), "data": ctx.data.eval.description}
    if labels is not None:
        ctx.metrics["verify"]["fp32_pytorch_accuracy"] = float((reference.argmax(-1) == labels).mean())
        if ctx.teacher is not None and ctx.teacher.task == task:  # what distillation had to learn from
            teacher = torch_outputs(ctx.teacher.module.eval(), samples)
            ctx.metrics["verify"]["teacher_pytorch_accuracy"] = float((teacher.argmax(-1) == labels).mean())
    if converted is not None:
        ctx.metrics["verify"]["pytorch_quantized_vs_fp32"] = parity.compare(task, reference, converted, labels)
    budget = ctx.budgets.accuracy_drop
    predictions: dict[str, np.ndarray] = {}
    for artifact in ctx.artifacts:
        if artifact.runtime not in LOADERS:
            artifact.parity = {"status": "not run", "reason": f"no {artifact.runtime} runtime on this machine"}
            ctx.decide("verify", artifact.name, "not run", f"the {artifact.runtime} runtime is not installed here")
            continue
        runner = load_artifact(artifact.path, artifact.runtime)
        quantized_onnx = artifact.runtime == "onnxruntime" and artifact.precision != "fp32"
        if quantized_onnx and ctx.backend.onnx_verify == "as-written":
            from edgekd.runtime.sessions import exact_runner

            # The profile's target is not this x86 host (TensorRT on a Jetson, an ARM phone): onnxruntime's x86
            # int8 kernels without VNNI saturate int16 partial sums, which neither target does; executing the
            # Q/DQ as written measures what the file computes. x86-cpu profiles keep the default session.
            runner = exact_runner(artifact.path)
            ctx.decide("verify", artifact.name, "Q/DQ executed as written (onnxruntime graph optimizations BASIC)",
                       f"this ONNX targets {ctx.profile.backend}, not this host's x86 int8 kernels, which saturate "
                       "on AVX2 without VNNI")
        host_default = None
        if quantized_onnx and ctx.backend.onnx_verify == "target-isa":
            from edgekd.runtime.onnx_checks import host_runs_isa, target_runner

            if not host_runs_isa(ctx.profile.isa):
                # this host's int8 kernels are not the target's: gate on what the file computes, report both
                host_default = parity.compare(task, reference, np.concatenate([runner(s)[0] for s in samples]), labels)
                runner = target_runner(artifact.path)
                ctx.decide("verify", artifact.name, "gated on exact int8 execution (no int16 saturation)",
                           f"this host lacks the profile's isa {ctx.profile.isa}: its default-session int8 kernels "
                           "differ from the target's (reported as host_default_session)")
        outputs = np.concatenate([runner(s)[0] for s in samples])
        artifact.parity = parity.compare(task, reference, outputs, labels)
        if task in parity.CLASSIFICATION_TASKS:
            predictions[artifact.name] = outputs.argmax(-1)
        if artifact.runtime == "onnxruntime" and ctx.backend.device_runtime == "onnxruntime":
            from edgekd.runtime.onnx_checks import onnx_parity_extras

            artifact.parity.update(onnx_parity_extras(ctx, artifact, samples, reference, labels))
            if host_default is not None:
                artifact.parity["host_default_session"] = {k: host_default[k] for k in
                                                           ("cosine_mean", "top1_agreement", "accuracy")
                                                           if k in host_default}
        if artifact.details.get("role") == "baseline":  # e.g. the PTQ baseline beside a QAT run: measured, not gated
            continue
        if converted is not None and artifact.precision != "fp32":
            vs_pt = parity.compare(task, converted, outputs)
            artifact.parity["vs_pytorch_quantized"] = {k: vs_pt[k] for k in
                                                       ("cosine_mean", "max_abs_error", "top1_agreement") if k in vs_pt}
        _gates(artifact, cfg, budget)
    if task in parity.CLASSIFICATION_TASKS:
        paired_comparisons(ctx, reference.argmax(-1), labels, predictions, budget)
    _size_gates(ctx)
    return ctx


def paired_comparisons(ctx: Context, reference_top1: np.ndarray, labels: np.ndarray | None,
                       predictions: dict[str, np.ndarray], budget: float | None) -> None:
    """Judge every classifier artifact against the fp32 student, and a QAT+KD artifact against the PTQ baseline of
    the same format, on the same samples (edgekd/stats.py): a difference of a few samples is reported as a tie, not
    as a win or a loss. "Correct" is the label where there are labels, otherwise agreement with fp32's top-1."""
    truth = labels if labels is not None else reference_top1
    basis = "accuracy on labels" if labels is not None else "top-1 agreement with fp32"
    reference_correct = reference_top1 == truth
    by_key = {(a.format, a.precision): a for a in ctx.artifacts if a.name in predictions}
    for artifact in by_key.values():
        correct = predictions[artifact.name] == truth
        paired = {"basis": basis, **stats.compare_paired(correct, reference_correct)}
        if budget is not None:
            paired.update({k: v for k, v in stats.drop_exceeds(correct, reference_correct, budget).items()
                           if k.startswith("drop_") or k in ("exceeds", "within")})
        artifact.parity["paired_vs_fp32"] = paired
        for name, top1 in ctx.baselines.items():  # e.g. the unpruned student (stages/prune.py)
            base_truth = labels if labels is not None else top1
            artifact.parity[f"paired_vs_{name}"] = {
                "basis": "accuracy on labels" if labels is not None else f"top-1 agreement with {name}",
                **stats.compare_paired(predictions[artifact.name] == base_truth, top1 == base_truth)}
        baseline = by_key.get((artifact.format, "int8-ptq"))
        if baseline is not None and artifact is not baseline and artifact.precision != "fp32":
            artifact.parity["paired_vs_ptq"] = {
                "basis": basis, **stats.compare_paired(correct, predictions[baseline.name] == truth)}


def _size_gates(ctx: Context) -> None:
    """The size budget, judged here too: a file's size is the same on every device, so it needs no bench run
    (`--skip bench` still judges it; a bench run re-judges it with the budgets it is given)."""
    from edgekd.bench.budgets import MB, judge_value
    from edgekd.bench.core import is_judged

    limit = ctx.budgets.artifact_size_mb
    device_runtime = ctx.backend.device_runtime
    for a in ctx.artifacts:
        if limit is not None and a.bytes and not a.is_reference and is_judged(a.runtime, a.details, device_runtime):
            a.verdicts.append(judge_value("artifact_size_mb", a.bytes / MB, limit, "max", "MB",
                                          artifact=a.name).to_dict())


def _gates(artifact, cfg, budget: float | None) -> None:
    from edgekd.bench.budgets import judge_value

    p = artifact.parity
    checks = [("accuracy_drop", p["drop"], budget, "max"),
              ("min_top1_agreement", p.get("top1_agreement"), cfg.min_top1_agreement, "min"),
              ("min_cosine", p.get("cosine_mean"), cfg.min_cosine, "min")]
    for metric, value, limit, kind in checks:
        if limit is None or value is None:
            continue
        artifact.verdicts.append(judge_value(metric, value, limit, kind, artifact=artifact.name,
                                             basis=p.get("drop_basis", "")).to_dict())
