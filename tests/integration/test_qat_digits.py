"""QAT on real digits: the scales in the exported artifacts are the ones learned in training, and BatchNorm folding
agrees between the fake-quant model trained and the converted model exported.

Real pieces: sklearn digits, DigitsCNN, torchao PT2E QAT with the XNNPACK quantizer, the ExecuTorch runtime,
the dynamo ONNX exporter and onnxruntime.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from edgekd.context import Split
from edgekd.models.builtin import DigitsCNN
from edgekd.quant import pt2e
from edgekd.stages import export, fuse, qat
from edgekd.train.loop import train_kd
from edgekd.train.teachers import train_classifier

from ..kd_support import digits_splits, make_context, trained_teacher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QAT = {"epochs": 2, "batch_size": 64, "lr": 5e-4, "seed": 1, "ptq_baseline": False}


@pytest.fixture(scope="module")
def pieces():
    data = digits_splits(n_eval=200, n_cal=32)
    data.train = Split(data.train.inputs[:640], labels=data.train.labels[:640])
    teacher = trained_teacher(data, width=8, epochs=6)
    torch.manual_seed(0)
    student = DigitsCNN(4)
    train_classifier(student, data.train, epochs=12, lr=1e-2, seed=0)
    return data, teacher, student.eval()


def _per_tensor_qparams(converted: torch.fx.GraphModule) -> list[float]:
    """Scales baked into the converted graph: the args of quantize_per_tensor nodes."""
    return [float(n.args[1]) for n in converted.graph.nodes
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and "dequantize" not in str(n.target)]


def _onnx_quantize_scales(path) -> list[float]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return [float(consts[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]


def test_exported_scales_are_the_learned_ones_not_recalibrated(pieces, tmp_path):
    data, teacher, student = pieces
    ctx = make_context(tmp_path, {"qat": QAT, "export": {"fp32_reference_artifacts": False}},
                       copy.deepcopy(student), teacher, data)
    ctx = fuse.run(ctx, ctx.recipe.stages.fuse)  # BN folded before QAT, as in the default pipeline
    before = qat.learned_activation_scales(qat.prepare_qat(ctx, ctx.recipe.stages.qat)[0])
    ctx = qat.run(ctx, ctx.recipe.stages.qat)
    learned = ctx.metrics["qat"]["learned_activation_scales"]
    assert len(learned) >= 5
    assert all(before[k][0] != v[0] for k, v in learned.items())  # the observers did move during training
    learned32 = {np.float32(v[0]) for v in learned.values()}

    baked = _per_tensor_qparams(ctx.quantized)
    assert baked and {np.float32(s) for s in baked} <= learned32, (baked, learned)

    ctx = export.run(ctx, ctx.recipe.stages.export)
    onnx_int8 = next(a for a in ctx.artifacts if a.format == "onnx" and a.precision == "int8")
    in_onnx = _onnx_quantize_scales(onnx_int8.path)
    assert len(in_onnx) >= 3 and {np.float32(s) for s in in_onnx} <= learned32
    assert np.float32(learned["activation_post_process_0"][0]) in {np.float32(s) for s in in_onnx}  # the input

    # What a PTQ recalibration would have given: other scales, none of which reached the artifact.
    prepared = pt2e.prepare(copy.deepcopy(ctx.model.module), ctx.model.example_inputs,
                            pt2e.make_quantizer("executorch-xnnpack"))
    pt2e.calibrate(prepared, data.calibration.inputs)
    recalibrated = {np.float32(s) for s in _per_tensor_qparams(pt2e.convert(prepared))}
    assert not recalibrated & {np.float32(s) for s in in_onnx}

    # The .pte carries the same quantized network: it agrees with the converted model in the ExecuTorch runtime.
    from edgekd.runtime import load_pte

    pte = next(a for a in ctx.artifacts if a.format == "pte" and a.precision == "int8")
    run = load_pte(pte.path)
    samples = data.eval.inputs[:64]
    got = np.concatenate([run(s)[0] for s in samples])
    with torch.no_grad():
        ref = np.concatenate([ctx.quantized(*s).numpy() for s in samples])
    bound = 0.05 * np.abs(ref).max()
    assert np.abs(got - ref).max() < bound
    # XNNPACK's int8 kernels round like the PT2E reference only up to the last step, so a sample whose top two logits
    # are closer than that may flip (measured: none on an AVX2 host, 1 of 64 on an AVX-512 VNNI one); any other
    # disagreement would mean a different network.
    top2 = np.sort(ref, axis=1)[:, -2:]
    flipped = got.argmax(1) != ref.argmax(1)
    assert flipped.sum() <= 2 and (top2[flipped, 1] - top2[flipped, 0] < 2 * bound).all(), (flipped, top2[flipped])


def test_batchnorm_left_in_the_graph_is_folded_consistently(pieces, tmp_path):
    """fuse disabled: PT2E QAT simulates the Conv+BN fold in training; convert folds it for real. With BN frozen in
    the last epoch, the fake-quant model evaluated in training and the converted model agree."""
    data, teacher, student = pieces
    ctx = make_context(tmp_path, {"qat": {**QAT, "epochs": 2}, "fuse": {"enabled": False}},
                       copy.deepcopy(student), teacher, data)
    cfg = ctx.recipe.stages.qat
    assert qat.has_batchnorm(ctx.model.module)
    prepared, _, _ = qat.prepare_qat(ctx, cfg)
    obs_at, bn_at = qat.freeze_epochs(cfg)
    assert (obs_at, bn_at) == (1, 1)
    result = train_kd(prepared, teacher, data.train, data.eval, cfg, task="image-classification", stage="qat",
                      ckpt_dir=tmp_path / "ck", device=torch.device("cpu"), resume=False,
                      example_inputs=ctx.model.example_inputs, set_mode=qat.qat_mode(obs_at, bn_at), quiet=True)
    assert result.history[-1]["eval"] >= 0.75  # trained (chance 0.1): > 0.8 on the AVX2 host, 0.800 on AVX-512 VNNI
    bn_nodes = [n for n in prepared.graph.nodes if str(n.target) in qat.BN_TARGETS]
    assert bn_nodes  # the simulated fold keeps BN in the training graph ...
    converted = pt2e.convert(copy.deepcopy(prepared))
    assert not [n for n in converted.graph.nodes if "batch_norm" in str(n.target)]  # ... convert folds it away
    x = torch.cat([s[0] for s in data.eval.inputs])
    with torch.no_grad():
        fake = prepared(x)
        real = converted(x)
    # Same arithmetic up to float rounding order (w * gamma / sigma folded before vs after the fake-quant); a rounding
    # difference can move a value across an int8 step, so a few borderline samples may flip, never the bulk.
    agreement = float((fake.argmax(1) == real.argmax(1)).float().mean())
    cosine = float(torch.nn.functional.cosine_similarity(fake, real, dim=1).mean())
    # measured: agreement >= 0.97 on the AVX2 host, 0.955 on an AVX-512 VNNI one, cosine 0.999 on both; the flips
    # are near-ties of the fake-quant model (top-2 gap under a tenth of its logit range), never confident samples
    top2 = torch.topk(fake, 2, dim=1).values
    gap = (top2[:, 0] - top2[:, 1])[fake.argmax(1) != real.argmax(1)]
    assert agreement >= 0.95 and cosine > 0.99, (agreement, cosine)
    assert (gap < 0.1 * (fake.max() - fake.min())).all(), gap
    labels = data.eval.labels
    fake_acc = float((fake.argmax(1) == labels).float().mean())
    real_acc = float((real.argmax(1) == labels).float().mean())
    # those near-ties move accuracy on 200 digits: <= 0.02 on the AVX2 host, 0.03 (6 digits) on AVX-512 VNNI
    assert abs(fake_acc - real_acc) <= 0.04, (fake_acc, real_acc)
