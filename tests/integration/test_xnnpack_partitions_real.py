"""EfficientNet-Lite0 (ImageNet weights) int8 .pte for snapdragon865: how XNNPACK cuts the graph (structure only).

- all layers int8 (`stages.ptq.keep_float=[]`): ONE partition, no fp32 pads and no Converts inside it;
- the ptq_int8 recipe as shipped (stem and first depthwise conv in fp32): ONE partition;
- a plan with an fp32 island in every block (every depthwise conv fp32, the rest int8): still ONE partition, with
  the fp32 convolutions inside it beside the int8 ones.
Before, the mixed graphs were lowered by a quantized pass and an fp32 pass: 36 partitions. Timing is the bench's job.
"""

from __future__ import annotations

import pytest

from edgekd.config.loading import load_recipe_and_profile
from edgekd.context import Context
from edgekd.export.executorch import export_pte
from edgekd.quant.plan import PrecisionPlan
from edgekd.runtime.etdump import partitions, profile_pte
from edgekd.stages import fuse, load, ptq
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RECIPE = ROOT / "recipes" / "efficientnet_lite0" / "ptq_int8.yaml"


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """The recipe's model after load + fuse, with a short calibration split (structure does not need 64)."""
    folder = tmp_path_factory.mktemp("effnet")
    recipe, profile, recipe_file, profile_file = load_recipe_and_profile(
        RECIPE, "snapdragon865", ["data.calibration_samples=8", "data.eval_samples=2"])
    ctx = Context(recipe=recipe, profile=profile, recipe_path=recipe_file, profile_path=profile_file,
                  out_dir=folder, work_dir=folder)
    return fuse.run(load.run(ctx, None), recipe.stages.fuse)


def lower(ctx: Context, keep_float: list[str], plan: PrecisionPlan | None, path):
    ctx.plan, ctx.quantized = plan, None
    cfg = ctx.recipe.stages.ptq.model_copy(update={"keep_float": keep_float})
    ctx = ptq.run(ctx, cfg)
    mixed = bool(ctx.float_layers)
    details = export_pte(ctx.quantized, ctx.model.example_inputs, path, mixed=mixed)
    events = profile_pte(path, ctx.model.example_inputs, runs=1)
    return ctx, details, [e.kind for e in events if e.delegated], partitions(events)


def test_all_int8_is_one_partition_without_fp32_pads(fused, tmp_path):
    ctx, details, kinds, calls = lower(fused, [], None, tmp_path / "int8.pte")
    assert ctx.float_layers == []
    assert details["delegated_subgraphs"] == 1 and calls == 1, details
    assert details["non_delegated_by_op"] == {"getitem": 1}, details
    assert not [k for k in kinds if k.startswith("Clamp")], kinds  # 33 ReLU6 fused into their convs
    assert "Constant Pad (ND, X32)" not in kinds, kinds  # 17 pads: int8, folded into the convs
    assert kinds.count("Convert (NC)") == 2, kinds  # quantize the image, dequantize the logits


def test_recipe_plan_is_one_partition(fused, tmp_path):
    ctx, details, kinds, calls = lower(fused, list(fused.recipe.stages.ptq.keep_float), None, tmp_path / "mixed.pte")
    assert ctx.float_layers == ["_blocks.0._depthwise_conv", "_conv_stem"]
    assert details["delegated_subgraphs"] == 1 and calls == 1 and details["partitioning"] == "single", details
    assert sum(k.startswith("Convolution (NHWC, F32)") for k in kinds) == 2, kinds


def test_an_fp32_island_in_every_block_is_still_one_partition(fused, tmp_path):
    plan = PrecisionPlan(rules={r"re:_blocks\.\d+\._depthwise_conv": "fp32", "_default": "int8"})
    ctx, details, kinds, calls = lower(fused, [], plan, tmp_path / "islands.pte")
    assert len(ctx.float_layers) == 16
    assert details["delegated_subgraphs"] == 1 and calls == 1 and details["partitioning"] == "single", details
    assert kinds.count("Convolution (NHWC, F32) DWConv") == 16, kinds
    assert not [k for k in kinds if k.startswith("Clamp")], kinds
