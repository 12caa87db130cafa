"""verify: run every artifact in its real runtime on held-out real inputs and compare with PyTorch.

Every artifact is compared with the fp32 student (the accuracy budget) and, for int8 artifacts, also with the
converted PT2E model (did the export preserve what PyTorch quantized?). A drop beyond the profile's accuracy_drop
budget is a failed verdict (exit 1).
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd import parity
from edgekd.context import Context
from edgekd.runtime import LOADERS, load_artifact


def torch_outputs(module: torch.nn.Module, samples: list[tuple]) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(*s).detach().numpy() for s in samples])


def run(ctx: Context, cfg) -> Context:
    if ctx.model.task == "causal-lm":
        from edgekd.llm import verify_llm

        return verify_llm(ctx)
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
    for artifact in ctx.artifacts:
        if artifact.runtime not in LOADERS:
            artifact.parity = {"status": "not run", "reason": f"no {artifact.runtime} runtime on this machine"}
            ctx.decide("verify", artifact.name, "not run", f"the {artifact.runtime} runtime is not installed here")
            continue
        runner = load_artifact(artifact.path, artifact.runtime)
        if (ctx.profile.backend != "onnxruntime" and artifact.runtime == "onnxruntime"
                and artifact.precision != "fp32"):
            from edgekd.export.qdq_onnx import exact_runner

            # The profile's target is not this x86 host (TensorRT on a Jetson, an ARM phone): onnxruntime's x86
            # int8 kernels without VNNI saturate int16 partial sums, which neither target does; executing the
            # Q/DQ as written measures what the file computes. x86-cpu profiles keep the default session.
            runner = exact_runner(artifact.path)
            ctx.decide("verify", artifact.name, "Q/DQ executed as written (onnxruntime graph optimizations BASIC)",
                       f"this ONNX targets {ctx.profile.backend}, not this host's x86 int8 kernels, which saturate "
                       "on AVX2 without VNNI")
        host_default = None
        if ctx.profile.backend == "onnxruntime" and artifact.runtime == "onnxruntime" and artifact.precision != "fp32":
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
        if artifact.runtime == "onnxruntime" and ctx.profile.backend == "onnxruntime":
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
    return ctx


def _gates(artifact, cfg, budget: float | None) -> None:
    p = artifact.parity
    checks = [("accuracy_drop", p["drop"], budget, "max"),
              ("min_top1_agreement", p.get("top1_agreement"), cfg.min_top1_agreement, "min"),
              ("min_cosine", p.get("cosine_mean"), cfg.min_cosine, "min")]
    for metric, value, limit, kind in checks:
        if limit is None or value is None:
            continue
        ok = value <= limit if kind == "max" else value >= limit
        artifact.verdicts.append({"metric": metric, "value": value, "limit": limit, "kind": kind,
                                  "margin": (limit - value) if kind == "max" else (value - limit),
                                  "status": "pass" if ok else "fail", "basis": p.get("drop_basis", "")})
