"""The TensorRT readiness lint on hand-built Q/DQ ONNX models: a clean one passes, each broken one is caught with
the rule, the node and a fix; `edgekd lint` exits 0 / 1 / 2."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgekd.cli import main
from edgekd.lint import lint_onnx


def qdq_conv(path, *, act_zp: int = 0, weight_axis: int | None = 0, int32_bias: bool = False, opset: int = 18,
             dangling_q: bool = False, cout: int = 4, cin: int = 4):
    """x -> Q -> DQ -> Conv(DQ(int8 weight, per channel), bias) -> Relu -> Q -> DQ -> y: what TensorRT fuses."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 127, size=(cout, cin, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(np.float32(0.05), "x_scale"), numpy_helper.from_array(np.int8(act_zp), "x_zp"),
             numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.full(cout, 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "w_zp"),
             numpy_helper.from_array(np.float32(0.1), "y_scale"), numpy_helper.from_array(np.int8(0), "y_zp")]
    w_attrs = {} if weight_axis is None else {"axis": weight_axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq_w", **w_attrs)]
    if int32_bias:
        inits += [numpy_helper.from_array(np.arange(cout, dtype=np.int32), "b_q"),
                  numpy_helper.from_array(np.full(cout, 0.0005, np.float32), "b_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b"], name="dq_bias", axis=0))
    else:
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "b"))
    nodes += [helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"], name="relu"),
              helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["rq"], name="q_y"),
              helper.make_node("DequantizeLinear", ["rq", "y_scale", "y_zp"], ["y"], name="dq_y")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 8, 8])]
    if dangling_q:
        nodes.append(helper.make_node("QuantizeLinear", ["y", "y_scale", "y_zp"], ["yq"], name="q_lonely"))
        outputs.append(helper.make_tensor_value_info("yq", TensorProto.INT8, [1, cout, 8, 8]))
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                [1, cin, 8, 8])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def rules(result) -> dict[str, list]:
    out: dict[str, list] = {}
    for v in result.violations:
        out.setdefault(v.rule, []).append(v)
    return out


def test_clean_model_passes_with_polygraphy(tmp_path):
    result = lint_onnx(qdq_conv(tmp_path / "ok.onnx"), "tensorrt", polygraphy=True)
    assert result.ok, [v.render() for v in result.violations]
    assert result.violations == []
    assert "polygraphy check lint" in result.checks_run
    assert any("polygraphy check lint: 7 nodes passing, 0 failing" in n for n in result.notes), result.notes


def test_nonzero_zero_point_is_caught(tmp_path):
    found = rules(lint_onnx(qdq_conv(tmp_path / "zp.onnx", act_zp=3), polygraphy=False))
    assert {v.node for v in found["TRT001"]} == {"q_x", "dq_x"}
    assert all("zero point [3] is not 0" in v.message and "symmetric" in v.fix for v in found["TRT001"])


def test_int32_bias_dequantize_is_caught(tmp_path):
    result = lint_onnx(qdq_conv(tmp_path / "bias.onnx", int32_bias=True), polygraphy=False)
    (v,) = rules(result)["TRT002"]
    assert v.node == "dq_bias" and v.severity == "error" and "float" in v.fix
    assert not result.ok


@pytest.mark.parametrize("axis, expect", [(None, "has no axis attribute"), (1, "has axis=1")])
def test_missing_or_wrong_weight_axis_is_caught(tmp_path, axis, expect):
    found = rules(lint_onnx(qdq_conv(tmp_path / "axis.onnx", weight_axis=axis), polygraphy=False))
    (v,) = found["TRT003"]
    assert v.node == "dq_w" and expect in v.message and "output-channel axis is 0" in v.message
    assert v.fix == "set DequantizeLinear axis=0 with one scale per output channel"


def test_dangling_quantize_is_caught(tmp_path):
    (v,) = rules(lint_onnx(qdq_conv(tmp_path / "q.onnx", dangling_q=True), polygraphy=False))["TRT004"]
    assert v.node == "q_lonely" and "not followed by DequantizeLinear" in v.message


def test_old_opset_is_caught(tmp_path):
    (v,) = rules(lint_onnx(qdq_conv(tmp_path / "old.onnx", opset=12), polygraphy=False))["TRT008"]
    assert "per-channel Q/DQ needs opset >= 13" in v.message


def test_cli_exit_codes(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["lint", str(qdq_conv(tmp_path / "ok.onnx")), "--no-polygraphy"])
    assert ok.exit_code == 0 and "ok:" in ok.output
    bad = runner.invoke(main, ["lint", str(qdq_conv(tmp_path / "zp.onnx", act_zp=5)), "--target", "tensorrt",
                               "--no-polygraphy"])
    assert bad.exit_code == 1
    assert "TRT001 nonzero-zero-point [q_x]" in bad.output and "fix:" in bad.output
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    unreadable = runner.invoke(main, ["lint", str(junk)])
    assert unreadable.exit_code == 2 and "not a readable ONNX file" in unreadable.output
    assert runner.invoke(main, ["lint", str(tmp_path / "missing.onnx")]).exit_code == 2
