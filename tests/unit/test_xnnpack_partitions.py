"""A Conv + ReLU6 net (all three spellings) with EfficientNet's "same" zero pads lowers to ONE XNNPACK partition of
int8 convolutions with the clamp fused (no Clamp, no pad, no Convert inside), all-int8 and with a layer in fp32.

Checked in the ExecuTorch runtime itself: the ETDump lists the XNNPACK operators that actually ran.
"""

import numpy as np
import pytest
import torch

from edgekd.export.executorch import export_pte
from edgekd.quant import pt2e
from edgekd.runtime import load_pte
from edgekd.runtime.etdump import partitions, profile_pte


class SamePadNet(torch.nn.Module):
    """stem conv -> ReLU6 -> zero pad -> depthwise conv -> ReLU6 -> pad -> pointwise conv -> ReLU6 -> residual add."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pad = torch.nn.ZeroPad2d((1, 1, 1, 1))
        self.dw = torch.nn.Conv2d(8, 8, 3, groups=8)
        self.pad2 = torch.nn.ZeroPad2d((0, 1, 0, 1))
        self.pw = torch.nn.Conv2d(8, 8, 3, stride=2)
        self.project = torch.nn.Conv2d(8, 8, 1)
        self.act = torch.nn.ReLU6()

    def forward(self, x):
        x = self.act(self.stem(x))  # the three spellings of ReLU6: nn.ReLU6 (hardtanh), F.relu6, clamp(0, 6)
        x = torch.nn.functional.relu6(self.dw(self.pad(x)))
        x = self.pw(self.pad2(x)).clamp(0, 6)
        return x + self.project(x)


def quantized(skip=()):
    torch.manual_seed(0)
    model = SamePadNet().eval()
    example = (torch.rand(1, 3, 16, 16),)
    quantizer = pt2e.make_quantizer("executorch-xnnpack", skip_modules=skip)
    prepared = pt2e.prepare(model, example, quantizer)
    pt2e.calibrate(prepared, [(torch.rand(1, 3, 16, 16) * 2 - 1,) for _ in range(8)])
    return pt2e.convert(prepared), example, quantizer


@pytest.mark.parametrize("skip", [(), ("dw",)], ids=["all-int8", "dw-fp32"])
def test_conv_relu6_lowers_to_one_partition_with_fused_clamps(tmp_path, skip):
    converted, example, quantizer = quantized(skip)
    assert len(quantizer.clamps_fused) == 3 - len(skip)  # every ReLU6 after an int8 conv
    path = tmp_path / "net.pte"
    details = export_pte(converted, example, path, mixed=bool(skip))
    assert details["delegated_subgraphs"] == 1 and details["partitioning"] == "single", details
    assert details["non_delegated_by_op"] == {"getitem": 1}, details

    events = profile_pte(path, example, runs=2)
    kinds = [e.kind for e in events if e.delegated]
    assert partitions(events) == 1
    assert not [k for k in kinds if k.startswith("Clamp")], kinds  # ReLU6 is each conv's output min/max
    gemms = [k for k in kinds if k.startswith(("Convolution", "Fully Connected"))]  # a 1x1 conv runs as a GEMM
    int8_convs, fp32_convs = [k for k in gemms if "QC8" in k], [k for k in gemms if "F32" in k]
    assert len(int8_convs) == 4 - len(skip) and len(fp32_convs) == len(skip), kinds
    if not skip:  # the zero pads were folded into the int8 convolutions; only the input/output Converts remain
        assert not [k for k in kinds if k.startswith("Constant Pad")], kinds
        assert kinds.count("Convert (NC)") == 2, kinds

    # the .pte computes what the converted PT2E model computes (pads padded with the zero point, not with 0)
    x = (torch.rand(1, 3, 16, 16) * 2 - 1,)
    with torch.no_grad():
        reference = converted(*x).numpy()
    out = load_pte(path)(x)[0]
    assert np.abs(out - reference).max() <= 0.05 * np.abs(reference).max() + 1e-3
