"""A phone profile's Q/DQ ONNX in onnxruntime's x86 kernels: "same" padding folded into the Conv and asymmetric
activations stored as uint8 (edgekd/export/qdq_onnx.py activations_as_uint8), so every int8 Conv and residual Add
fuses (QLinearConv / QLinearAdd) instead of running in float between Q/DQ pairs, with the same values as the int8
file."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import torch

from edgekd.export.qdq_onnx import export_qdq_onnx
from edgekd.quant import pt2e
from edgekd.runtime.sessions import ort_session
from tests.conftest import session_ops

# two PT2E exports and three onnxruntime sessions: about 10 s


class ResidualCnn(torch.nn.Module):
    """EfficientNet's pieces: explicit "same" padding before a strided conv, ReLU6, a residual add whose input also
    feeds the next conv."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, stride=2)
        self.expand = torch.nn.Conv2d(16, 32, 1)
        self.project = torch.nn.Conv2d(32, 16, 1)
        self.head = torch.nn.Conv2d(16, 32, 1)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.stem(torch.nn.functional.pad(x, (0, 1, 0, 1))))
        x = x + self.project(torch.nn.functional.relu6(self.expand(x)))
        return self.fc(torch.nn.functional.relu6(self.head(x)).mean((2, 3)))


def _export(converted, example, path, activation_type):
    return export_qdq_onnx(converted, example, path, input_names=["image"], output_names=["logits"], dynamic_axes={},
                           lint=False, polygraphy=False, activation_type=activation_type)


def _zero_point_types(path) -> dict[str, set[str]]:
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    types: dict[str, set[str]] = {"activation": set(), "weight": set()}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            kind = "weight" if node.op_type == "DequantizeLinear" and node.input[0] in inits else "activation"
            types[kind].add(inits[node.input[2]].dtype.name)
    return types


def test_uint8_activations_keep_the_values_and_fuse_every_conv(tmp_path):
    torch.manual_seed(0)
    model = ResidualCnn().eval()
    example = (torch.randn(1, 3, 32, 32),)
    prepared = pt2e.prepare(model, example, pt2e.make_quantizer("executorch-xnnpack"))
    pt2e.calibrate(prepared, [(torch.randn(1, 3, 32, 32),) for _ in range(8)])
    converted = pt2e.convert(prepared)
    as_int8, as_uint8 = tmp_path / "int8.onnx", tmp_path / "uint8.onnx"
    _export(converted, example, as_int8, "int8")
    details = _export(converted, example, as_uint8, "uint8")

    assert details["rewrite_counts"].get("fold_pad_into_conv") == 1
    assert details["rewrite_counts"].get("activations_as_uint8") == 1
    assert "Pad" not in {n.op_type for n in onnx.load(str(as_uint8)).graph.node}
    assert _zero_point_types(as_int8)["activation"] == {"int8"}
    assert _zero_point_types(as_uint8) == {"activation": {"uint8"}, "weight": {"int8"}}

    # the same real values: Q/DQ executed as written give bit-identical logits
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    exact = [ort_session(p, 1, exact=True).run(None, {"image": x})[0] for p in (as_int8, as_uint8)]
    assert np.array_equal(exact[0], exact[1])
    with torch.no_grad():
        want = converted(torch.from_numpy(x)).numpy()
    assert np.abs(exact[1] - want).max() <= 1e-3 * max(1.0, np.abs(want).max())

    # onnxruntime's default x86 session: no Conv or Add left in float between Q/DQ pairs
    int8_ops, uint8_ops = session_ops(as_int8, tmp_path), session_ops(as_uint8, tmp_path)
    assert uint8_ops.get("QLinearConv", 0) == 4 and uint8_ops.get("QLinearAdd", 0) == 1, uint8_ops
    assert uint8_ops.get("Conv", 0) == 0 and uint8_ops.get("Add", 0) == 0, uint8_ops
    if platform.machine().lower() in ("x86_64", "amd64"):  # onnxruntime on ARM fuses int8 activations too
        assert int8_ops.get("Conv", 0) + int8_ops.get("Add", 0) > 0, int8_ops  # what the uint8 storage fixes
    default = ort_session(as_uint8, 1).run(None, {"image": x})[0]
    cos = float((default * want).sum() / np.linalg.norm(default) / np.linalg.norm(want))
    assert cos >= 0.99, cos
