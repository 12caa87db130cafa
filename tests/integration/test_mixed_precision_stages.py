"""sensitivity -> mixed_precision stages on a real dataset (sklearn digits) and the `edgekd sensitivity` command."""

import json

import pytest
import yaml
from click.testing import CliRunner

from edgekd.config.schema import Profile, Recipe
from edgekd.context import Context
from edgekd.errors import EdgekdError, GateFailed
from edgekd.quant.plan import PrecisionPlan, quantizable_layers
from edgekd.stages import load as load_stage
from edgekd.stages import mixed_precision as mp_stage
from edgekd.stages import sensitivity as sens_stage

pytestmark = pytest.mark.integration

RECIPE = {
    "name": "digits_mixed",
    "model": {"source": "builtin:digits_cnn"},
    "data": {"source": "builtin:digits", "calibration_samples": 32, "eval_samples": 16},
    "stages": {"sensitivity": {"samples": 32}, "mixed_precision": {"granularity_kb": 1, "overhead_mb": 0.01}},
}


def make_ctx(tmp_path, budget_mb=None, backend="executorch-xnnpack", **stages):
    data = json.loads(json.dumps(RECIPE))
    data["stages"].update(stages)
    if budget_mb is not None:
        data["budgets"] = {"artifact_size_mb": budget_mb}
    recipe = Recipe(**data)
    profile = Profile(name="p", backend=backend)
    ctx = Context(recipe=recipe, profile=profile, recipe_path=tmp_path / "r.yaml", profile_path=tmp_path / "p.yaml",
                  out_dir=tmp_path)
    return load_stage.run(ctx, None)


def test_solved_plan_meets_budget_and_keeps_the_most_sensitive_layers(tmp_path):
    ctx = make_ctx(tmp_path, budget_mb=0.04)
    sens_stage.check(ctx, ctx.recipe.stages.sensitivity)
    mp_stage.check(ctx, ctx.recipe.stages.mixed_precision)
    ctx = sens_stage.run(ctx, ctx.recipe.stages.sensitivity)
    assert (tmp_path / "sensitivity.json").is_file() and ctx.plots["sensitivity"].is_file()
    sens = ctx.metrics["sensitivity"]
    assert sens["metric_name"] == "accuracy"  # digits have labels: task-metric delta measured
    assert sens["precisions"] == ["int8", "int4"]  # XNNPACK: int4 weight-only measured (Linear only)
    ctx = mp_stage.run(ctx, ctx.recipe.stages.mixed_precision)
    plan = PrecisionPlan.load(tmp_path / "precision_plan.json")
    layers = quantizable_layers(ctx.model.module)
    resolved = plan.resolve_all(layers)
    assert set(resolved.values()) == {"int8", "fp32"}  # a real mix at this budget
    assert plan.meta["estimated_bytes"] <= 0.04e6
    assert plan.meta["estimated_error"] < plan.meta["alternatives"]["all-int8"]["estimated_error"]
    kept = {d.subject for d in ctx.decisions if d.stage == "mixed_precision" and d.action.startswith("kept")}
    assert kept == {n for n, p in resolved.items() if p == "fp32"}
    assert ctx.plan is not None and ctx.plan.float_layers(layers) == {n: "fp32" for n in kept}
    rows = ctx.metrics["mixed_precision"]["layers_above_int8"]
    assert all(r["extra_bytes"] > 0 and r["int8_sqnr_db"] is not None for r in rows)


def test_no_plan_fits_is_a_gate_failure(tmp_path):
    ctx = make_ctx(tmp_path, budget_mb=0.012)
    ctx = sens_stage.run(ctx, ctx.recipe.stages.sensitivity.model_copy(update={"samples": 8}))
    with pytest.raises(GateFailed, match=r"no precision plan meets artifact_size_mb=0.012; the smallest is") as err:
        mp_stage.run(ctx, ctx.recipe.stages.mixed_precision)
    assert err.value.code == 1


def test_saved_plan_naming_a_missing_layer_is_exit_2(tmp_path):
    bad = tmp_path / "plan.json"
    PrecisionPlan(rules={"features.4": "fp32", "_default": "int8"}).save(bad)
    ctx = make_ctx(tmp_path, mixed_precision={"plan": str(bad)})
    mp_stage.check(ctx, ctx.recipe.stages.mixed_precision)  # parses; layer names need the model
    with pytest.raises(EdgekdError) as err:
        mp_stage.run(ctx, ctx.recipe.stages.mixed_precision)
    assert err.value.code == 2
    text = err.value.render()
    assert "no layer named 'features.4'" in text and "did you mean:" in text and "features.3" in text


def test_saved_plan_is_loaded_instead_of_solving(tmp_path):
    good = tmp_path / "in_plan.json"
    PrecisionPlan(rules={"features.0": "fp32", "re:classifier": "fp32"}).save(good)
    ctx = make_ctx(tmp_path, mixed_precision={"plan": str(good)})
    ctx = mp_stage.run(ctx, ctx.recipe.stages.mixed_precision)
    assert ctx.plan.float_layers(quantizable_layers(ctx.model.module)) == {"features.0": "fp32", "classifier": "fp32"}
    assert json.loads((tmp_path / "precision_plan.json").read_text())["meta"]["loaded_from"] == str(good)


def test_check_rejects_missing_budget_and_unsupported_precision(tmp_path):
    ctx = make_ctx(tmp_path)
    with pytest.raises(EdgekdError, match="needs a size budget"):
        mp_stage.check(ctx, ctx.recipe.stages.mixed_precision)
    ctx = make_ctx(tmp_path, budget_mb=1, mixed_precision={"precisions": ["int8", "fp16"]})
    with pytest.raises(EdgekdError, match="fp16 cannot be held per layer on executorch-xnnpack"):
        mp_stage.check(ctx, ctx.recipe.stages.mixed_precision)


def test_cli_sensitivity_table_and_plan(tmp_path):
    from edgekd.cli import main

    recipe = tmp_path / "digits.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "stages": {**RECIPE["stages"], "fuse": {}}}))
    runner = CliRunner()
    result = runner.invoke(main, ["sensitivity", "-p", "x86-cpu", "-r", str(recipe), "-o", str(tmp_path / "out"),
                                  "--samples", "16", "--budget-mb", "0.04"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "digits_mixed-sensitivity"
    assert "features.0" in result.output and "plan:" in result.output
    for name in ("sensitivity.json", "sensitivity.png", "precision_plan.json"):
        assert (folder / name).is_file()
    assert json.loads((folder / "sensitivity.json").read_text())["precisions"] == ["int8"]  # onnxruntime: no int4
    failed = runner.invoke(main, ["sensitivity", "-p", "x86-cpu", "-r", str(recipe), "-o", str(tmp_path / "out"),
                                  "--samples", "8", "--budget-mb", "0.005"])
    assert failed.exit_code == 1
    assert "no precision plan meets artifact_size_mb=0.005" in failed.output
