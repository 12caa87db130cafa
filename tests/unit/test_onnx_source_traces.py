"""ONNX artifacts do not depend on where they were exported from: torch.onnx's per-node stack traces (absolute paths
of the checkout and the virtualenv) are dropped, module scopes are kept (edgekd/export/onnx.py drop_source_traces)."""

from __future__ import annotations

import onnx
import torch

from edgekd.context import ModelBundle
from edgekd.export.onnx import SOURCE_TRACE_KEYS, export_onnx


def test_exported_onnx_has_module_scopes_but_no_source_paths(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 6 * 6, 5)).eval()
    bundle = ModelBundle(name="tiny", task="image-classification", module=module,
                         example_inputs=(torch.rand(1, 3, 8, 8),), input_names=["x"])
    export_onnx(module, bundle, tmp_path / "tiny.onnx")
    model = onnx.load(str(tmp_path / "tiny.onnx"))
    keys = {p.key for n in model.graph.node for p in n.metadata_props}
    assert "namespace" in keys  # what precision plans map nodes to modules with
    assert not keys & SOURCE_TRACE_KEYS
    raw = (tmp_path / "tiny.onnx").read_bytes()
    assert str(tmp_path).encode() not in raw and b"site-packages" not in raw and b".py\", line" not in raw
