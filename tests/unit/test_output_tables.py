"""Tables people can read at 80 columns (issue 16): names break at separators, never mid-word; `profiles list`
shows the budget values; identical decisions are one row with a count."""

from __future__ import annotations

from click.testing import CliRunner

from edgekd.cli import main
from edgekd.config.loading import available_profiles, available_recipes, find_profile, load_any
from edgekd.report.console import budget_lines, wrap_name
from edgekd.report.comparison import table
from edgekd.report.markdown import grouped_decisions


def test_wrap_name_breaks_after_folders_first_and_keeps_every_character():
    assert wrap_name("efficientnet_lite0/ptq_int8.yaml", 22).splitlines() == ["efficientnet_lite0/", "ptq_int8.yaml"]
    assert wrap_name("builtin:efficientnet_lite0", 19).splitlines() == ["builtin:", "efficientnet_lite0"]
    assert wrap_name("executorch-xnnpack", 11).splitlines() == ["executorch-", "xnnpack"]
    name = "py:edgekd.llm.models:smollm2_with_a_long_factory_name"
    lines = wrap_name(name, 12).splitlines()
    assert "".join(lines) == name
    assert all(len(line) <= 12 or "_" not in line and "." not in line for line in lines)
    assert wrap_name("x86-cpu", 14) == "x86-cpu"


def _listing(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, list(args))
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    assert "…" not in result.output, result.output
    return result.output


def test_profiles_list_shows_every_budget_value_at_80_columns():
    out = _listing("profiles", "list")
    for name in available_profiles():
        prof = load_any(find_profile(name))
        assert name in out
        for line in budget_lines(prof.budgets.model_dump()).splitlines():
            assert line in out, (line, out)


def test_recipes_list_keeps_file_names_whole_at_80_columns():
    out = _listing("recipes", "list")
    for path in available_recipes():
        assert path.name in out, (path.name, out)


def test_identical_decisions_are_one_row_with_a_count():
    same = [{"stage": "ptq", "subject": f"features.{i}.conv", "action": "quantized after the clamp",
             "reason": "ReLU6 folded"} for i in range(31)]
    other = {"stage": "fuse", "subject": "features.0", "action": "folded", "reason": "BatchNorm after Conv"}
    rows = grouped_decisions(same[:10] + [other] + same[10:])
    assert [(r["stage"], r["count"]) for r in rows] == [("ptq", 31), ("fuse", 1)]
    subjects = rows[0]["subject"].split(", ")
    assert subjects[0] == "features.0.conv" and subjects[1:] == [f".{i}.conv" for i in range(1, 31)]
    assert rows[1]["subject"] == "features.0"
    assert table(rows).count("\n") == 4  # header, rule, two rows
