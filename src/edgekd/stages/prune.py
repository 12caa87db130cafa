"""prune: structured channel pruning of the (distilled) student, then KD recovery from the unpruned one.

Runs between distill and fuse (src/edgekd/pipeline.py), so fuse, QAT/PTQ and export see the smaller network as if
it had been built that way. The plan (edgekd.prune.structured) removes the recipe's fraction of MACs or parameters;
the unpruned student is then the teacher of a short KD fine-tune (the same trainer as distill, edgekd.train.loop).

Accuracy is measured at each step on the held-out split, each against the unpruned student on the same samples
(paired, src/edgekd/stats.py): unpruned fp32 -> pruned -> pruned + KD; verify adds the artifacts (int8) through
ctx.baselines["unpruned"]. The pruned student becomes ctx.reference: artifacts are compared with what is shipped.

check() validates the target against the student built from the recipe, before any training: unknown layer
names and targets no plan can reach are bad input (exit 2).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from edgekd import stats
from edgekd.config.schema import PruneStage
from edgekd.context import Context
from edgekd.errors import EdgekdError
from edgekd.prune import structured

STAGE = "prune"


def settings(cfg: PruneStage, module: torch.nn.Module, example_inputs: tuple, file: str) -> structured.Settings:
    """The recipe's section with every layer name resolved against `module` (all unknown names at once) and the
    output layers added to the ignored ones."""
    kind = "macs" if cfg.target.macs is not None else "params"
    ignore = structured.resolve_names(module, cfg.ignore, f"stages.{STAGE}.ignore", file)
    heads = [n for n in structured.output_layers(module, example_inputs) if n not in ignore]
    caps: dict[str, float] = {}
    for pattern, cap in cfg.layer_max_ratio.items():
        for name in structured.resolve_names(module, [pattern], f"stages.{STAGE}.layer_max_ratio", file):
            caps[name] = cap
    return structured.Settings(kind=kind, target=getattr(cfg.target, kind), importance=cfg.importance,
                               global_pruning=cfg.global_pruning, ignore=ignore, heads=heads, max_ratio=cfg.max_ratio,
                               layer_max_ratio=caps, round_to=cfg.round_to, key=f"stages.{STAGE}")


def _student_for_check(ctx: Context):
    """The student as the recipe builds it (random or loaded weights; the architecture is what matters here)."""
    if ctx.model is not None:
        return ctx.model
    from edgekd.models import load_bundle

    base = ctx.recipe_path.parent if ctx.recipe_path is not None else None
    return load_bundle(ctx.recipe.model, ctx.recipe.data, key="model.source", base_dir=base)


def check(ctx: Context, cfg: PruneStage) -> None:
    file = str(ctx.recipe_path)
    bundle = _student_for_check(ctx)
    module = copy.deepcopy(bundle.module).eval()
    plan_settings = settings(cfg, module, bundle.example_inputs, file)
    if cfg.importance == "taylor":  # ranking needs gradients; the check only needs the channel counts
        plan_settings.importance = "l2"
    structured.reachable(module, bundle.example_inputs, plan_settings, file)


def top1(module: torch.nn.Module, split, batch_size: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(*inputs).argmax(-1).numpy() for inputs, _ in split.batches(batch_size)])


def _step(name: str, predictions: np.ndarray, unpruned: np.ndarray, truth: np.ndarray, basis: str,
          margin: float) -> dict:
    correct, base = predictions == truth, unpruned == truth
    return {"step": name, "accuracy": float(correct.mean()), "basis": basis,
            "paired_vs_unpruned": {**stats.compare_paired(correct, base),
                                   **{k: v for k, v in stats.drop_exceeds(correct, base, margin).items()
                                      if k.startswith("drop") or k in ("exceeds", "within", "margin")}}}


def _taylor_batches(ctx: Context, cfg: PruneStage, unpruned: torch.nn.Module) -> list:
    if ctx.data.train is None or len(ctx.data.train) == 0:
        raise EdgekdError("taylor importance needs a train split for its gradients", file=str(ctx.recipe_path),
                          key="data.train_samples", hint="set data.train_samples, or importance: l1 | l2")
    batches = []
    for inputs, labels in ctx.data.train.batches(cfg.recovery.batch_size if cfg.recovery else 32):
        if labels is None:
            with torch.no_grad():
                labels = unpruned(*inputs).argmax(-1)
        batches.append((inputs, labels))
        if len(batches) == cfg.taylor_batches:
            break
    return batches


def _frozen_bn_mode(model: torch.nn.Module, training: bool, epoch: int) -> None:
    """train_kd's set_mode with every BatchNorm in eval mode (running statistics used and kept)."""
    model.train(training)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def run(ctx: Context, cfg: PruneStage) -> Context:
    from edgekd.train.loop import resolve_device, train_kd
    from edgekd.train.support import checkpoint_dir, record

    file = str(ctx.recipe_path)
    student = ctx.model.module.eval()
    example = ctx.model.example_inputs
    unpruned = copy.deepcopy(student).eval()
    plan_settings = settings(cfg, student, example, file)
    labels = ctx.data.eval.labels.numpy() if ctx.data.eval.labels is not None else None
    unpruned_top1 = top1(unpruned, ctx.data.eval)
    truth = labels if labels is not None else unpruned_top1
    basis = "accuracy on labels" if labels is not None else "top-1 agreement with the unpruned student"
    macs0, params0 = structured.count(student, example)
    widths0 = structured.layer_widths(student)
    if cfg.importance == "taylor":
        structured.taylor_gradients(student, _taylor_batches(ctx, cfg, unpruned))
    plan = structured.search(student, example, plan_settings, file)
    structured.cut(student, example, plan_settings, plan.ratio)
    with torch.no_grad():
        if student(*example).shape != unpruned(*example).shape:
            raise EdgekdError("pruning changed the shape of the student's output", file=file,
                              key=f"stages.{STAGE}.ignore", hint="add the layer that produces the output to ignore")
    steps = [_step("fp32 unpruned", unpruned_top1, unpruned_top1, truth, basis, cfg.drop_margin),
             _step("pruned", top1(student.eval(), ctx.data.eval), unpruned_top1, truth, basis, cfg.drop_margin)]
    if cfg.recovery is not None:
        device = resolve_device(cfg.recovery.device, ctx.device)
        result = train_kd(student, unpruned, ctx.data.train, ctx.data.eval, cfg.recovery, task=ctx.model.task,
                          stage="prune_recovery", ckpt_dir=checkpoint_dir(ctx, "prune_recovery"), device=device,
                          resume=ctx.resume, example_inputs=example, progress=ctx.progress,
                          **({"set_mode": _frozen_bn_mode} if cfg.recovery.freeze_bn else {}))
        student.to("cpu").eval()
        unpruned.to("cpu")
        record(ctx, "prune_recovery", result, cfg.recovery, {"device": str(device), "teacher": "unpruned student"},
               teacher="the unpruned student")
        steps.append(_step("pruned + KD", top1(student, ctx.data.eval), unpruned_top1, truth, basis,
                           cfg.drop_margin))
    else:
        ctx.decide(STAGE, "recovery", "not run", "the recipe has no stages.prune.recovery")
    macs1, params1 = structured.count(student, example)
    ctx.reference = copy.deepcopy(student).eval()
    ctx.baselines["unpruned"] = unpruned_top1
    ctx.decide(STAGE, "fp32 reference", "replaced by the pruned student",
               "artifacts are compared with the network that is shipped; the unpruned one is a paired baseline")
    for name in plan_settings.ignore:
        ctx.decide(STAGE, name, "output channels not pruned", "listed in stages.prune.ignore")
    for name in plan_settings.heads:
        ctx.decide(STAGE, name, "output channels not pruned", "produces the model's output")
    ctx.metrics[STAGE] = {
        "target": {plan_settings.kind: plan_settings.target}, "importance": cfg.importance,
        "global_pruning": cfg.global_pruning, "ratio": plan.ratio, "max_ratio": cfg.max_ratio,
        "macs_before": macs0, "macs_after": macs1, "params_before": params0, "params_after": params1,
        "macs_reduction": 1 - macs1 / macs0, "params_reduction": 1 - params1 / params0,
        "ignored": plan_settings.ignore + plan_settings.heads,
        "layers": structured.layer_table(widths0, structured.layer_widths(student)),
        "steps": steps, "samples": len(truth)}
    if "model" in ctx.metrics:
        ctx.metrics["model"].update(parameters=params1, parameters_before_prune=params0)
    return ctx

