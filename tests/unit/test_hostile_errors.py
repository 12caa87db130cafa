"""Hostile and unlucky input (issue 15), refusals: binary files, YAML bombs and duplicate keys, names and --out,
model construction, numbers and JSON types, lint input, and the CLI's top-level guard. Each is exit 2 with one
`error:` line per problem, never a traceback, and nothing written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.cli import main
from tests.bench_support import artifacts_folder, mlp_onnx, snapshot
from tests.conftest import DIGITS_RECIPE
from tests.hostile_support import assert_refused, cli, error_lines


# ------------------------------------------------------------------------------------------------ 5. not text
@pytest.mark.parametrize("content", [Path(sys.executable).read_bytes()[:65536], bytes(range(256)) * 4,
                                     b"name: x\n\xff\xfe\x00 broken", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32])
def test_binary_files_as_recipe_profile_or_baseline_are_one_line(tmp_path, content):
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(content)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DIGITS_RECIPE)
    assert_refused(cli("validate", blob), str(blob))
    assert_refused(cli("show-config", "-p", "x86-cpu", "-r", blob), "not")
    assert_refused(cli("show-config", "-p", blob, "-r", recipe), str(blob))
    assert_refused(cli("export", "-p", blob, "-r", recipe, "--out", tmp_path / "o"), str(blob))
    assert_refused(cli("lint", mlp_onnx(tmp_path / "m.onnx", layers=1), "--no-polygraphy", "-p", blob), str(blob))
    assert_refused(cli("size", "check", "--baseline", blob, tmp_path / "m.onnx"), str(blob), "--baseline")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.yaml", "m.onnx", "r.yaml"]


def test_directory_as_recipe_says_directory(tmp_path):
    assert_refused(cli("validate", tmp_path), "is a directory")
    assert_refused(cli("export", "-p", "x86-cpu", "-r", tmp_path, "--out", tmp_path / "o"), "is a directory")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ 6. YAML
def alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines)


@pytest.mark.parametrize("where", ["list", "kwargs", "override"])
def test_yaml_alias_bombs_are_refused_fast_without_printing_the_value(tmp_path, where):
    bomb = alias_bomb()
    recipe = tmp_path / "r.yaml"
    if where == "list":  # a list field: stages.ptq.keep_float
        recipe.write_text(f"{bomb}\n" + DIGITS_RECIPE.replace("  ptq: {}", "  ptq:\n    keep_float: *a8"))
    elif where == "kwargs":
        recipe.write_text(f"{bomb}\n" + DIGITS_RECIPE.replace("  task: image-classification",
                                                              "  task: image-classification\n  kwargs: {x: *a8}"))
    else:
        recipe.write_text(DIGITS_RECIPE)
    # an override value is a YAML document of its own: the same bomb in one flow sequence
    flow = "[" + ", ".join(line.split(": ", 1)[1] for line in bomb.splitlines()) + ", *a8]"
    extra = ["--set", f"model.kwargs.x={flow}"] if where == "override" else []
    started = time.perf_counter()
    result = cli("show-config", "-p", "x86-cpu", "-r", recipe, *extra)
    elapsed = time.perf_counter() - started
    text = assert_refused(result, "--set" if where == "override" else str(recipe), "aliases expand the document")
    assert len(text) < 600 and "lol, lol" not in text, text
    assert elapsed < 60  # a guard against minutes of expansion, not a timing assertion of the code
    if where != "override":
        assert ": line " in text
        assert_refused(cli("validate", recipe))


def test_duplicate_keys_are_refused_with_both_line_numbers(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DIGITS_RECIPE + "name: other\n")
    text = assert_refused(cli("validate", recipe), "duplicate key 'name' (first on line 2)")
    assert f"{recipe}: line {len(DIGITS_RECIPE.splitlines()) + 1}" in text
    recipe.write_text(DIGITS_RECIPE.replace("  fuse: {}", "  fuse: {conv_bn: true, conv_bn: false}"))
    assert_refused(cli("show-config", "-p", "x86-cpu", "-r", recipe), "duplicate key 'conv_bn'")


# ------------------------------------------------------------------------------------------------ 7. names, --out
@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a" * 300, "x/../../etc", "a b", "nul\\x00"])
def test_recipe_names_that_are_not_file_names_are_refused_before_any_work(tmp_path, name):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DIGITS_RECIPE.replace("name: digits_smoke", f"name: {json.dumps(name)}"))
    assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", tmp_path / "o"), "name")
    assert not (tmp_path / "o").exists()


def test_unusable_out_is_one_line_before_any_work(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DIGITS_RECIPE)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", a_file), "--out", "not a folder")
    assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", a_file / "below"), "not a folder")
    assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", tmp_path / ("n" * 300)), "255")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", tmp_path / "broken"), "broken link")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", locked / "o"), "permission")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.yaml", "file", "broken"]
                                                                + (["locked"] if os.geteuid() else []))


# ------------------------------------------------------------------------------------------------ 8. models
def test_model_construction_errors_name_the_file_keys_and_shapes(tmp_path):
    from edgekd.models.builtin import SmallCNN

    weights = tmp_path / "w8.pt"
    torch.save(SmallCNN(8).state_dict(), weights)
    renamed = tmp_path / "renamed.pt"
    torch.save({f"body.{k}": v for k, v in SmallCNN(16).state_dict().items()}, renamed)
    cases = {
        f"{{width: 16, weights: {weights}}}": [str(weights), "features.0.weight (8, 1, 3, 3) vs the model's "
                                                            "(16, 1, 3, 3)"],
        f"{{width: 16, weights: {renamed}}}": [str(renamed), "missing: features.0.weight", "unexpected: body."],
        "{depth: 3}": ["model.kwargs", "depth", "allowed: width, weights, seed"],
        "{width: abc}": ["model.kwargs", "TypeError"],
        "{width: -4}": ["model.kwargs", "negative dimension"],
    }
    for kwargs, expect in cases.items():
        recipe = tmp_path / "r.yaml"
        recipe.write_text(DIGITS_RECIPE.replace("  task: image-classification",
                                                f"  task: image-classification\n  kwargs: {kwargs}"))
        assert_refused(cli("export", "-p", "x86-cpu", "-r", recipe, "--out", tmp_path / "o"), *expect)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ 9. numbers, JSON
@pytest.mark.parametrize("args, expect", [
    (["--port", "0"], "--port"), (["--port", "65536"], "--port"), (["--port", "-1"], "--port"),
    (["--runs", "0"], "--runs"), (["--warmup", "-1"], "--warmup"), (["--threads", "0"], "--threads"),
    (["--port", "nan"], "--port"), (["--runs", "1e9"], "--runs")])
def test_numeric_bench_options_out_of_range_are_one_line(tmp_path, args, expect):
    folder = artifacts_folder(tmp_path / "out" / "tiny", mlp_onnx(tmp_path / "mlp.onnx", layers=1),
                              {"x": np.ones((1, 32), np.float32)})
    before = snapshot(folder)
    assert_refused(cli("bench", "-p", "x86-cpu", "-a", folder, *args), expect)
    assert snapshot(folder) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_tolerances_and_budgets_are_refused(tmp_path, value):
    onnx_file = mlp_onnx(tmp_path / "m.onnx", layers=1)
    assert_refused(cli("size", "check", "--baseline", tmp_path / "b.json", onnx_file, "--tolerance-pct", value,
                       "--update-baseline"), "--tolerance-pct", "finite")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DIGITS_RECIPE)
    assert_refused(cli("show-config", "-p", "x86-cpu", "-r", recipe, "--set", f"stages.fuse.atol={value}",
                       "--set", f"profile.budgets.latency_p50_ms={value}"), "stages.fuse.atol", lines=2)
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("manifest", [[], "text", 3, None, {"artifacts": {"a": 1}}, {"artifacts": ["x"]},
                                      {"artifacts": [{"name": 1, "path": [], "format": "onnx", "runtime": "x"}]},
                                      {"artifacts": [], "recipe": []}, {"artifacts": [], "inputs": 5}])
def test_manifests_of_the_wrong_json_type_are_one_line(tmp_path, manifest):
    folder = artifacts_folder(tmp_path / "out" / "tiny", mlp_onnx(tmp_path / "mlp.onnx", layers=1),
                              {"x": np.ones((1, 32), np.float32)})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(folder)
    assert_refused(cli("bench", "-p", "x86-cpu", "-a", folder, "--runs", "3", "--warmup", "0"), "manifest.json")
    if not isinstance(manifest, dict):
        assert_refused(cli("size", "check", "--baseline", tmp_path / "b.json", folder, "--update-baseline"),
                       "manifest.json", "top level must be a JSON object")
    assert snapshot(folder) == before and not (tmp_path / "b.json").exists()


# ------------------------------------------------------------------------------------------------ 10. lint
@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x08\x07", Path(sys.executable).read_bytes()[:4096]])
def test_lint_refuses_empty_and_non_onnx_files(tmp_path, content):
    model = tmp_path / "model.onnx"
    model.write_bytes(content)
    assert_refused(cli("lint", model, "--target", "tensorrt", "--no-polygraphy"), str(model))
    assert_refused(cli("lint", tmp_path, "--no-polygraphy"), "not a file")


# ------------------------------------------------------------------------------------------------ top-level guard
def test_any_exception_escaping_a_command_is_one_line_and_debug_shows_the_traceback(tmp_path):
    import click

    from edgekd.cli.common import handles_errors

    @click.command("explode")
    @handles_errors
    def explode():
        {}["missing"]

    @click.command("explode-unguarded")
    def explode_unguarded():
        raise OSError(28, "No space left on device")

    main.add_command(explode)
    main.add_command(explode_unguarded)
    try:
        text = assert_refused(cli("explode"), "internal error in main explode: KeyError: 'missing' at "
                              "test_hostile_errors.py:", "in explode; rerun with --debug")
        assert "\n" not in text
        debug = cli("--debug", "explode")
        assert debug.exit_code == 2 and "Traceback" in debug.stderr and len(error_lines(debug.stderr)) == 1
        assert_refused(cli("explode-unguarded"), "main explode-unguarded failed: OSError", "No space left")
    finally:
        main.commands.pop("explode")
        main.commands.pop("explode-unguarded")
    assert_refused(cli("no-such-command"), "No such command")
    assert_refused(cli("export", "--profile"), "--profile")


def test_errors_without_a_file_do_not_start_with_an_empty_field():
    from edgekd.errors import EdgekdError, Problem

    assert EdgekdError("bad", key="--set").error_lines() == ["error: --set: bad"]
    assert Problem("", "k", "m").render() == "k: m"
    assert Problem("", "", "m", value="x" * 10_000).render().endswith("(10002 characters))")
