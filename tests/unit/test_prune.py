"""Structured pruning (edgekd.prune.structured, stages/prune.py): plans that reach their target and keep the network
valid, and bad targets refused before any training, with exit 2 and the reason."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.config.loading import load_recipe_and_profile
from edgekd.errors import EdgekdError
from edgekd.prune import structured

from ..conftest import ROOT, write_recipe
from ..prune_support import PRUNE_RECIPE, tiny_net

EXAMPLE = (torch.rand(1, 1, 8, 8),)


def _settings(**kw) -> structured.Settings:
    defaults = dict(kind="macs", target=0.3, heads=["classifier"])
    return structured.Settings(**{**defaults, **kw})


@pytest.mark.parametrize("kind", ["macs", "params"])
@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_plan_reaches_the_target_and_keeps_the_network_valid(kind, importance):
    net = tiny_net()
    before = structured.count(net, EXAMPLE)
    settings = _settings(kind=kind, importance=importance)
    if importance == "taylor":
        batch = torch.rand(16, 1, 8, 8)
        structured.taylor_gradients(net, [((batch,), torch.randint(0, 10, (16,)))])
    plan = structured.search(net, EXAMPLE, settings)
    assert structured.count(net, EXAMPLE) == before  # the search prunes copies only
    structured.cut(net, EXAMPLE, settings, plan.ratio)
    macs, params = structured.count(net, EXAMPLE)
    assert (macs, params) == (plan.macs, plan.params)
    kept = macs / before[0] if kind == "macs" else params / before[1]
    assert 1 - kept >= 0.3 and 1 - kept < 0.45  # the smallest cut that reaches it, not far beyond
    widths = structured.layer_widths(net)
    assert widths["classifier"]["out"] == 10  # the head keeps every class
    assert widths["block.0"]["in"] == widths["stem.0"]["out"] == widths["block.6"]["out"]  # residual group
    assert widths["block.3"]["in"] == widths["block.3"]["out"] == widths["block.0"]["out"]  # depthwise group
    assert widths["hidden"]["out"] < 32  # Linear hidden units are pruned too
    assert net(torch.rand(4, 1, 8, 8)).shape == (4, 10)


def test_ignore_and_layer_caps_are_respected():
    net = tiny_net()
    settings = _settings(target=0.3, ignore=["down.0"], layer_max_ratio={"hidden": 0.0})
    plan = structured.search(net, EXAMPLE, settings)
    structured.cut(net, EXAMPLE, settings, plan.ratio)
    widths = structured.layer_widths(net)
    assert widths["down.0"]["out"] == 32 and widths["hidden"]["out"] == 32
    assert widths["block.0"]["out"] < 32


def test_output_layers_are_found_by_the_output_tensor():
    assert structured.output_layers(tiny_net(), EXAMPLE) == ["classifier"]


def test_resolve_names_reports_every_unknown_name_at_once():
    net = tiny_net()
    assert structured.resolve_names(net, ["stem.0", "re:block\\.[03]"], "k") == ["stem.0", "block.0", "block.3"]
    with pytest.raises(EdgekdError) as info:
        structured.resolve_names(net, ["stem.9", "stem.0", "re:nothing.*"], "stages.prune.ignore")
    text = info.value.render()
    assert "'stem.9'" in text and "'re:nothing.*'" in text and "stages.prune.ignore" in text
    assert "block.3" in text  # the layers that do exist are listed


def test_unreachable_target_is_bad_input():
    net = tiny_net()
    with pytest.raises(EdgekdError, match="no pruning plan removes 90%") as info:
        structured.search(net, EXAMPLE, _settings(target=0.9, max_ratio=0.2))
    assert info.value.key == "stages.prune.target.macs" and info.value.code == 2


@pytest.mark.parametrize("target", ["{macs: 0}", "{macs: 1}", "{macs: 1.5}", "{params: -0.2}",
                                    "{macs: 0.3, params: 0.3}", "{}", "{flops: 0.3}"])
def test_fraction_outside_0_1_or_not_exactly_one_target_is_a_config_error(tmp_path, target):
    recipe = write_recipe(tmp_path, PRUNE_RECIPE.format(prune=f"    target: {target}"))
    with pytest.raises(EdgekdError) as info:
        load_recipe_and_profile(recipe, "snapdragon865")
    assert info.value.code == 2 and "stages.prune.target" in info.value.render()


@pytest.mark.parametrize("prune, expected", [
    ("    target: {macs: 0.3}\n    ignore: [features.99, 're:head.*']", ["'features.99'", "'re:head.*'"]),
    ("    target: {macs: 0.3}\n    layer_max_ratio: {classifer: 0.1}", ["'classifer'", "layer_max_ratio"]),
    ("    target: {params: 0.95}\n    max_ratio: 0.3", ["no pruning plan removes 95%", "target.params"]),
], ids=["unknown-ignore", "unknown-cap", "unreachable"])
def test_bad_targets_exit_2_before_any_training(tmp_path, prune, expected):
    recipe = write_recipe(tmp_path, PRUNE_RECIPE.format(prune=prune))
    result = CliRunner().invoke(main, ["export", "--profile", "snapdragon865", "--recipe", str(recipe), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    for text in expected:
        assert text in result.output
    assert "[prune]" in result.output and "distill done" not in result.output
    assert not (tmp_path / "out" / "prune_bad").exists()


def test_recipes_without_a_prune_section_do_not_plan_it():
    from edgekd.context import Context
    from edgekd.pipeline import planned_stages

    recipe, profile, _, _ = load_recipe_and_profile(ROOT / "recipes/fashion_cnn/distill_qat_int8.yaml",
                                                    "snapdragon865")
    ctx = Context(recipe=recipe, profile=profile, recipe_path=ROOT, profile_path=ROOT, out_dir=ROOT)
    assert "prune" not in [s.name for s in planned_stages(ctx)]
    recipe, _, _, _ = load_recipe_and_profile(ROOT / "recipes/fashion_cnn/prune_kd_int8.yaml", "snapdragon865")
    ctx.recipe = recipe
    names = [s.name for s in planned_stages(ctx)]
    assert names.index("distill") < names.index("prune") < names.index("fuse")


def test_copy_keeps_gradients_for_taylor_trials():
    net = tiny_net()
    net(EXAMPLE[0]).sum().backward()
    clone = structured._copy_with_grads(net)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(net.parameters(), clone.parameters()))


def test_frozen_bn_mode_trains_weights_but_keeps_running_statistics():
    from edgekd.stages.prune import _frozen_bn_mode

    net = tiny_net()
    _frozen_bn_mode(net, True, 0)
    assert net.training and net.stem[0].training
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = net.stem[1].running_mean.clone()
    net(torch.rand(8, 1, 8, 8) * 5).sum().backward()
    assert torch.equal(net.stem[1].running_mean, before) and net.stem[0].weight.grad is not None
