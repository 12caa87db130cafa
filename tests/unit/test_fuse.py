"""BatchNorm folding is exact (numerically) and every pattern not fused is recorded with a reason."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from edgekd.config.schema import FuseStage
from edgekd.context import Context, Data, ModelBundle, Split
from edgekd.stages import fuse


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.ln = nn.GroupNorm(2, 8)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(8, 4)
        self.bn1d = nn.BatchNorm1d(4)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.gelu(self.ln(self.conv2(x)))
        return self.bn1d(self.fc(x.mean((2, 3))))


def _ctx(module, backend="executorch-xnnpack"):
    from edgekd.config.schema import DataConfig, ModelSource, Profile, Recipe

    torch.manual_seed(0)
    for m in module.modules():  # non-trivial statistics so folding is really exercised
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    module.eval()
    sample = (torch.randn(1, 3, 16, 16),)
    bundle = ModelBundle("net", "image-classification", module, sample, ["x"])
    data = Data(calibration=Split([(torch.randn(1, 3, 16, 16),) for _ in range(4)]), eval=Split([]))
    recipe = Recipe(name="t", model=ModelSource(source="builtin:x"), data=DataConfig(source="builtin:x"))
    profile = Profile(name="p", backend=backend)
    return Context(recipe=recipe, profile=profile, recipe_path=Path("r"), profile_path=Path("p"),
                   out_dir=Path("."), model=bundle, data=data)


def test_bn_folded_outputs_match_and_bn_removed():
    net = Net()
    ctx = _ctx(net)
    before = copy.deepcopy(net)
    x = torch.randn(2, 3, 16, 16)
    ctx = fuse.run(ctx, FuseStage())
    assert isinstance(net.bn, nn.Identity) and isinstance(net.bn1d, nn.Identity)
    assert ctx.metrics["fuse"]["bn_folded"] == 2
    with torch.no_grad():
        torch.testing.assert_close(net(x), before(x), atol=1e-5, rtol=1e-4)
    assert ctx.metrics["fuse"]["max_abs_error_vs_unfused"] < 1e-4


def test_unfusable_patterns_are_recorded_with_reasons():
    ctx = fuse.run(_ctx(Net()), FuseStage())
    by_subject = {(d.subject, d.action): d.reason for d in ctx.decisions}
    assert any("group_norm" in action and "depend on each input" in reason
               for (_, action), reason in by_subject.items())
    # XNNPACK has no fused conv+gelu; the GroupNorm sits between them anyway, so only ReLU6 is fused.
    assert ctx.metrics["fuse"]["activations_fused_by_backend"] == 1


def test_disabled_pattern_is_recorded():
    ctx = fuse.run(_ctx(Net()), FuseStage(conv_bn=False))
    assert any(d.action == "not folded" and "disabled" in d.reason for d in ctx.decisions)
    assert ctx.metrics["fuse"]["bn_folded"] == 1  # the Linear+BN1d one
