"""One plan file drives every exporter of the product path (mixed_precision -> ptq -> export -> verify); each artifact
is read back per layer by the export stage (details["layers"], plan_mismatches) and run in its runtime by verify.

A real small model (the built-in digits CNN on sklearn digits) keeps it fast: the XNNPACK .pte (the plan's float
layers left out of the PT2E quantizer), the Q/DQ ONNX of the same PT2E model, onnxruntime's static QDQ and dynamic
int8 (nodes_to_exclude), and the TensorRT layer precisions named by ONNX node.
"""

from __future__ import annotations

import re

import pytest

from edgekd.config.schema import Profile, Recipe
from edgekd.context import Context
from edgekd.pipeline import run_pipeline
from edgekd.quant.plan import PrecisionPlan, quantizable_layers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_with_plan(tmp_path, onnx_mode: str, backend: str = "executorch-xnnpack", formats=("pte", "onnx")):
    from edgekd.stages import load as load_stage

    recipe = Recipe(name="digits_plan", model={"source": "builtin:digits_cnn"},
                    data={"source": "builtin:digits", "calibration_samples": 32, "eval_samples": 64},
                    stages={"ptq": {"onnx_mode": onnx_mode}, "export": {"formats": list(formats)}})
    ctx = Context(recipe=recipe, profile=Profile(name="p", backend=backend), recipe_path=tmp_path / "r.yaml",
                  profile_path=tmp_path / "p.yaml", out_dir=tmp_path)
    ctx = load_stage.run(ctx, None)
    layers = quantizable_layers(ctx.model.module)
    first, last = layers[0], layers[-1]
    plan_path = PrecisionPlan(rules={first: "fp32", f"re:^{re.escape(last)}$": "fp32", "_default": "int8"}).save(
        tmp_path / "plan.json")
    mp_cfg = {"plan": str(plan_path)}
    from edgekd.config.schema import MixedPrecisionStage

    ctx = run_pipeline(ctx, only=("mixed_precision", "ptq", "export", "verify"),
                       configs={"mixed_precision": MixedPrecisionStage(**mp_cfg)})
    expected = {n: ("fp32" if n in (first, last) else "int8") for n in layers}
    return ctx, expected


def _found(artifact) -> dict:
    return {n: v.get("precision") for n, v in artifact.details["layers"].items()}


def test_pte_and_pt2e_onnx_hold_the_planned_precision_per_layer_and_verify(tmp_path):
    ctx, expected = run_with_plan(tmp_path, "pt2e")
    assert set(expected.values()) == {"int8", "fp32"}
    mixed = [a for a in ctx.artifacts if a.precision == "mixed"]
    assert {a.format for a in mixed} == {"pte", "onnx"}
    for artifact in mixed:
        assert _found(artifact) == expected, artifact.name
        assert artifact.details["plan_mismatches"] == []
        assert artifact.parity["cosine_mean"] > 0.98  # run in its real runtime by verify
    pte = next(a for a in mixed if a.format == "pte")
    assert all(v["delegated"] for v in pte.details["layers"].values())  # float layers still run inside XNNPACK


@pytest.mark.parametrize("mode", ["ort_static", "ort_dynamic"])
def test_onnxruntime_quantizers_exclude_the_plans_nodes(tmp_path, mode):
    ctx, expected = run_with_plan(tmp_path, mode, backend="onnxruntime", formats=("onnx",))
    (onnx,) = [a for a in ctx.artifacts if a.precision == "mixed"]
    found = _found(onnx)
    if mode == "ort_static":
        assert found == expected and onnx.details["plan_mismatches"] == []
    else:  # dynamic int8 quantizes MatMul/Gemm only: convolutions stay float whatever the plan says, and are recorded
        assert all(found[n] == "fp32" for n, p in expected.items() if p == "fp32")
        assert {r["layer"] for r in onnx.details["plan_mismatches"]} == {
            n for n, p in expected.items() if p == "int8" and found[n] == "fp32"}
        assert any(d.subject.startswith(onnx.name) and "MatMul/Gemm only" in d.reason for d in ctx.decisions) \
            or not onnx.details["plan_mismatches"]
    assert onnx.parity["cosine_mean"] > 0.98


def test_tensorrt_layer_precisions_name_the_onnx_nodes(tmp_path):
    from edgekd.export.onnx import export_onnx
    from edgekd.quant.inspect import onnx_layer_precisions
    from edgekd.quant.ort import plan_to_trt_layers
    from edgekd.stages import load as load_stage

    recipe = Recipe(name="digits_trt", model={"source": "builtin:digits_cnn"},
                    data={"source": "builtin:digits", "calibration_samples": 8, "eval_samples": 8})
    ctx = load_stage.run(Context(recipe=recipe, profile=Profile(name="p", backend="tensorrt"),
                                 recipe_path=tmp_path / "r.yaml", profile_path=tmp_path / "p.yaml",
                                 out_dir=tmp_path), None)
    layers = quantizable_layers(ctx.model.module)
    plan = PrecisionPlan(rules={layers[0]: "fp16", layers[-1]: "fp32", "_default": "int8"})
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(ctx.model.module, ctx.model, fp32)
    trt = plan_to_trt_layers(plan, fp32, layers)
    nodes = {v["node"]: k for k, v in onnx_layer_precisions(fp32, layers).items()}
    assert {nodes[n]: p for n, p in trt.items()} == {layers[0]: "fp16", layers[-1]: "fp32"}
