"""One plan file drives every exporter; each artifact is read back and checked per layer, then run in its runtime.

A small CNN+MLP keeps it fast: .pte (PT2E + XNNPACK, plan's float layers left out of the quantizer), Q/DQ ONNX from
the same PT2E model, onnxruntime static QDQ and dynamic int8 (nodes_to_exclude), and the TensorRT layer precisions.
"""

import numpy as np
import pytest
import torch

from edgekd.quant.inspect import compare_with_plan, onnx_layer_precisions
from edgekd.quant.mixed import export_fp32_onnx, onnx_with_plan, pte_with_plan
from edgekd.quant.ort import plan_to_trt_layers
from edgekd.quant.plan import PrecisionPlan, quantizable_layers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 16)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), Block(), torch.nn.ReLU(),
                               torch.nn.Linear(16, 5)).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    plan_path = PrecisionPlan(rules={"2.conv": "fp32", "re:4": "fp32", "_default": "int8"}).save(
        folder / "precision_plan.json")
    torch.manual_seed(1)
    calibration = [(torch.rand(1, 3, 10, 10) * 2 - 1,) for _ in range(16)]
    return folder, PrecisionPlan.load(plan_path), calibration


def expected(plan, layers):
    return {n: plan.resolve(n) for n in layers}


def test_pte_has_the_planned_precision_per_layer_and_runs(setup):
    from edgekd.runtime import load_pte

    folder, plan, calibration = setup
    m = model()
    layers = quantizable_layers(m)
    result = pte_with_plan(m, calibration[0], calibration, plan, folder / "mixed.pte")
    rows = compare_with_plan(plan, result["layers"], layers)
    assert all(r["ok"] for r in rows), rows
    assert all(v["delegated"] for v in result["layers"].values())  # float layers still run inside XNNPACK
    assert expected(plan, layers) == {"0": "int8", "2.conv": "fp32", "2.fc": "int8", "4": "fp32"}
    run = load_pte(folder / "mixed.pte")
    x = calibration[3][0]
    out = run((x,))[0]
    with torch.no_grad():
        ref = m(x).numpy()
    assert out.shape == ref.shape and np.abs(out - ref).max() < 0.1 * np.abs(ref).max() + 0.05

    # Q/DQ ONNX from the same converted PT2E model: the float layers have no DequantizeLinear on their weights
    qdq = folder / "pt2e_qdq.onnx"
    export_fp32_onnx(result["quantized_graph"], calibration[0], qdq)
    found = onnx_layer_precisions(qdq, layers)
    assert {n: found[n]["precision"] for n in layers} == expected(plan, layers)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_onnxruntime_quantizers_exclude_the_plans_nodes(setup, mode):
    from edgekd.runtime import load_onnx

    folder, plan, calibration = setup
    m = model()
    layers = quantizable_layers(m)
    fp32 = export_fp32_onnx(m, calibration[0], folder / f"fp32_{mode}.onnx")
    result = onnx_with_plan(fp32, calibration, plan, folder / f"mixed_{mode}.onnx", layers, mode=mode)
    found = {n: result["layers"][n]["precision"] for n in layers}
    if mode == "static":
        assert found == expected(plan, layers)
    else:  # dynamic int8 quantizes MatMul/Gemm only; convolutions stay float whatever the plan says
        assert found == {"0": "fp32", "2.conv": "fp32", "2.fc": "int8", "4": "fp32"}
    assert sorted(result["excluded_nodes"]) == sorted(plan_to_trt_layers(plan, fp32, layers))
    out = load_onnx(folder / f"mixed_{mode}.onnx")((calibration[2][0],))[0]
    with torch.no_grad():
        ref = m(calibration[2][0]).numpy()
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max() + 0.05


def test_tensorrt_layer_precisions_name_the_onnx_nodes(setup):
    folder, plan, calibration = setup
    m = model()
    fp32 = export_fp32_onnx(m, calibration[0], folder / "fp32_trt.onnx")
    layers = quantizable_layers(m)
    trt = plan_to_trt_layers(plan, fp32, layers)
    nodes = {v["node"]: k for k, v in onnx_layer_precisions(fp32, layers).items()}
    assert {nodes[n]: p for n, p in trt.items()} == {"2.conv": "fp32", "4": "fp32"}
