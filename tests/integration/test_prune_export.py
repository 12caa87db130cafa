"""A pruned network is still one valid graph: a tiny CNN with a residual add, a depthwise conv and a hidden Linear
layer, pruned by the prune stage (with KD recovery), then fused, int8-quantized, exported to .pte and ONNX and run
in the ExecuTorch runtime and onnxruntime against the pruned PyTorch model on real held-out digits."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from edgekd.runtime import load_onnx, load_pte
from edgekd.stages import export, fuse, prune, ptq, verify

from ..kd_support import digits_splits, make_context
from ..prune_support import tiny_net

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~1-2 min: training, two exports, two runtimes


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    from edgekd.train.teachers import train_classifier

    tmp = tmp_path_factory.mktemp("prune")
    data = digits_splits(n_eval=200, n_cal=32)
    student = tiny_net()
    train_classifier(student, data.train, epochs=3, lr=5e-3, seed=0)
    stages = {"prune": {"target": {"macs": 0.35}, "importance": "taylor",
                        "recovery": {"epochs": 2, "batch_size": 64, "lr": 0.003}},
              "ptq": {}}
    ctx = make_context(tmp, stages, student.eval(), tiny_net(), data)
    ctx.recipe_path.write_text(yaml.safe_dump(ctx.recipe.model_dump(mode="json")))  # the manifest records it
    ctx.reference = ctx.model.module
    ctx.metrics["model"] = {"parameters": sum(p.numel() for p in student.parameters())}
    for stage in (prune, fuse, ptq, export, verify):
        name = stage.__name__.rsplit(".", 1)[1]
        cfg = getattr(ctx.recipe.stages, name)
        if name == "prune":
            stage.check(ctx, cfg)
        ctx = stage.run(ctx, cfg)
    return ctx


def test_pruned_graph_exports_and_verifies_in_both_runtimes(pruned):
    ctx = pruned
    metrics = ctx.metrics["prune"]
    assert metrics["macs_reduction"] >= 0.35
    assert {(a.format, a.precision) for a in ctx.artifacts} >= {("pte", "fp32"), ("pte", "int8"), ("onnx", "fp32"),
                                                                ("onnx", "int8")}
    layers = {r["layer"]: r for r in metrics["layers"]}
    hidden = layers["hidden"]["out_after"]
    assert hidden < layers["hidden"]["out_before"]
    for a in ctx.artifacts:
        run = load_pte(a.path) if a.format == "pte" else load_onnx(a.path)
        out = run((np.zeros((1, 1, 8, 8), dtype=np.float32),))
        assert out[0].shape == (1, 10), a.name
        assert a.parity["samples"] == 200
        if a.precision == "fp32":  # the artifact is the pruned network, exactly
            assert a.parity["cosine_mean"] > 0.9999 and a.parity["top1_agreement"] == 1.0, a.name
        else:
            assert a.parity["top1_agreement"] >= 0.9, a.name
        assert a.parity["paired_vs_unpruned"]["samples"] == 200  # judged against the unpruned student too
    pte_int8 = next(a for a in ctx.artifacts if a.format == "pte" and a.precision == "int8")
    assert pte_int8.details["delegated_ops"] > 0


def test_steps_are_paired_against_the_unpruned_student(pruned):
    steps = {s["step"]: s for s in pruned.metrics["prune"]["steps"]}
    assert list(steps) == ["fp32 unpruned", "pruned", "pruned + KD"]
    assert steps["fp32 unpruned"]["paired_vs_unpruned"]["discordant"] == 0
    assert steps["fp32 unpruned"]["accuracy"] > 0.8  # a trained student, not a degenerate one
    for name in ("pruned", "pruned + KD"):
        assert steps[name]["paired_vs_unpruned"]["samples"] == 200
        assert steps[name]["paired_vs_unpruned"]["verdict"] in ("better", "worse", "tie")
    # recovery did what it is for: the KD fine-tune is not significantly worse than the cut alone
    assert steps["pruned + KD"]["accuracy"] >= steps["pruned"]["accuracy"] - 0.02
    decisions = {(d.stage, d.subject): d for d in pruned.decisions}
    assert decisions[("prune", "classifier")].reason == "produces the model's output"


def test_report_has_the_pruning_section(pruned):
    from edgekd.report.manifest import build_manifest
    from edgekd.report.markdown import render_manifest

    text = render_manifest(build_manifest(pruned, pruned.out_dir))
    section = text.split("\n## Pruning\n")[1].split("\n## ")[0]
    for label in ("MACs", "parameters", "fp32 unpruned", "pruned + KD", "int8 artifact", "pte (executorch)",
                  "onnx (onnxruntime)", "| block.3 | Conv (depthwise) |", "| hidden | Linear |"):
        assert label in section, label
