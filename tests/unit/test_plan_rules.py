"""PrecisionPlan: rule order (exact, re:, _default), JSON round trip, validation against a model's layer names."""

import json

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.quant.plan import PrecisionPlan, quantizable_layers


def tiny():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 6 * 6, 10), torch.nn.Linear(10, 4))


def test_resolve_order_exact_then_pattern_then_default():
    plan = PrecisionPlan(rules={"re:.*\\.fc": "fp16", "head.fc": "fp32", "re:block\\..*": "int4", "_default": "int8"})
    assert plan.resolve("head.fc") == "fp32"          # exact beats a pattern listed earlier
    assert plan.resolve("body.fc") == "fp16"          # first matching pattern
    assert plan.resolve("block.1.conv") == "int4"
    assert plan.resolve("stem") == "int8"             # default
    assert plan.resolve("block") == "int8"            # fullmatch, not search


def test_float_layers_lists_only_float_precisions():
    plan = PrecisionPlan(rules={"0": "fp32", "3": "fp16", "_default": "int8"})
    assert plan.float_layers(quantizable_layers(tiny())) == {"0": "fp32", "3": "fp16"}


def test_save_load_round_trip_is_atomic_json(tmp_path):
    plan = PrecisionPlan.from_choices({"0": "fp32", "3": "int8", "4": "int8"}, {"budget_mb": 1.5})
    path = plan.save(tmp_path / "precision_plan.json")
    data = json.loads(path.read_text())
    assert data["rules"] == {"0": "fp32", "_default": "int8"}
    assert data["meta"]["budget_mb"] == 1.5
    assert not list(tmp_path.glob(".*tmp*"))
    again = PrecisionPlan.load(path)
    assert again.resolve_all(["0", "3", "4"]) == {"0": "fp32", "3": "int8", "4": "int8"}


def test_unknown_layer_names_close_matches_exit_2():
    plan = PrecisionPlan(rules={"_blocks.0._depthwse_conv": "fp32", "_default": "int8"})
    with pytest.raises(EdgekdError) as err:
        plan.validate(["_conv_stem", "_blocks.0._depthwise_conv", "_blocks.0._project_conv"], file="p.json")
    text = err.value.render()
    assert err.value.code == 2
    assert "_blocks.0._depthwse_conv" in text and "did you mean: _blocks.0._depthwise_conv" in text


def test_pattern_matching_nothing_is_an_error():
    plan = PrecisionPlan(rules={"re:encoder\\..*": "fp16"})
    with pytest.raises(EdgekdError, match="1 layer"):
        plan.validate(quantizable_layers(tiny()))


def test_bad_precision_and_bad_regex_rejected(tmp_path):
    with pytest.raises(EdgekdError, match="invalid precision plan") as err:
        PrecisionPlan(rules={"0": "int3", "re:(": "fp32"})
    assert len(err.value.problems) == 2
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(EdgekdError, match="not valid JSON"):
        PrecisionPlan.load(tmp_path / "p.json")
    with pytest.raises(EdgekdError, match="not found"):
        PrecisionPlan.load(tmp_path / "missing.json")
