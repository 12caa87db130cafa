"""Config validation: every shipped file loads; bad input reports all problems at once, exit 2, writes nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.config.loading import apply_overrides, load_any, load_recipe_and_profile
from edgekd.errors import EdgekdError

from ..conftest import ROOT, write_recipe


def shipped_files():
    return sorted((ROOT / "recipes").glob("*/*.yaml")) + sorted((ROOT / "device_profiles").glob("*.yaml"))


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_recipe_and_profile_validates(path):
    obj = load_any(path)
    assert obj.name


def test_recipe_header_names_the_command_that_runs_it():
    for path in sorted((ROOT / "recipes").glob("*/*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# edgekd "), f"{path}: first line must be the command that runs it"
        assert str(path.relative_to(ROOT)) in first or "edgekd llm" in first


BAD = """
name: bad
model:
  source: builtin:efficientnet_lite0
  taks: image-classification
data:
  source: builtin:photo_crops
  calibration_samples: many
"""


def test_typo_wrong_type_and_unknown_profile_reported_together(tmp_path):
    recipe = write_recipe(tmp_path, BAD)
    with pytest.raises(EdgekdError) as info:
        load_recipe_and_profile(recipe, "no-such-phone")
    text = info.value.render()
    assert "model.taks: unknown key" in text and "allowed:" in text and "task" in text
    assert "data.calibration_samples" in text and "'many'" in text
    assert "unknown device profile" in text and "snapdragon865" in text
    assert len(info.value.problems) == 3


def test_cli_exits_2_and_writes_nothing(tmp_path):
    recipe = write_recipe(tmp_path, BAD)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "--profile", "no-such-phone", "--recipe", str(recipe),
                                       "--out", str(out)])
    assert result.exit_code == 2
    assert "model.taks" in result.output and "no-such-phone" in result.output
    assert not out.exists()


def test_literal_errors_list_allowed_values(tmp_path):
    prof = tmp_path / "device_profiles"
    prof.mkdir()
    path = prof / "p.yaml"
    path.write_text("name: p\nbackend: coreml\nrunner: {kind: telnet}\n")
    with pytest.raises(EdgekdError) as info:
        load_any(path)
    text = info.value.render()
    assert "backend" in text and "executorch-xnnpack" in text and "'coreml'" in text
    assert "runner.kind" in text and "ssh" in text and "adb" in text


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(EdgekdError, match="file not found"):
        load_recipe_and_profile(tmp_path / "nope.yaml", "x86-cpu")
    broken = write_recipe(tmp_path, "name: [unclosed\n")
    with pytest.raises(EdgekdError, match="not valid YAML"):
        load_recipe_and_profile(broken, "x86-cpu")


def test_overrides_apply_to_recipe_and_profile(root):
    recipe, profile, _, _ = load_recipe_and_profile(root / "recipes/efficientnet_lite0/ptq_int8.yaml", "x86-cpu",
                                                    ["stages.bench.runs=7", "profile.threads=3"])
    assert recipe.stages.bench.runs == 7 and profile.threads == 3
    assert apply_overrides({}, ["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}
    with pytest.raises(EdgekdError, match="key=value"):
        apply_overrides({}, ["nonsense"])


def test_bad_override_is_a_config_error(root):
    with pytest.raises(EdgekdError) as info:
        load_recipe_and_profile(root / "recipes/efficientnet_lite0/ptq_int8.yaml", "x86-cpu",
                                ["stages.bench.runz=7"])
    assert "stages.bench.runz" in info.value.render()


def test_cli_lists_profiles_and_recipes():
    runner = CliRunner()
    listed = runner.invoke(main, ["profiles", "list"])
    assert listed.exit_code == 0 and "snapdragon865" in listed.output and "jetson-orin" in listed.output
    shown = runner.invoke(main, ["profiles", "show", "x86-cpu"])
    assert shown.exit_code == 0 and "backend: onnxruntime" in shown.output
    assert runner.invoke(main, ["profiles", "show", "nope"]).exit_code == 2
    assert "ptq_int8" in runner.invoke(main, ["recipes", "list"]).output
