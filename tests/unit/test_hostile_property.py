"""Property-based hostile input (issue 15): generated recipes, profiles and command lines, 2,000 cases in all.

For every generated input: no traceback, exit 0 or 2 (never 1, the gate code, never a crash), every refusal with one
`error:` line per problem (the count the loader itself reports), and nothing created on disk. Runs in-process through
click's CliRunner so 2,000 cases fit in well under a minute.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgekd.cli import main
from edgekd.config.loading import load_any, load_recipe_and_profile
from edgekd.config.schema import Profile, Recipe
from edgekd.errors import EdgekdError
from tests.conftest import DIGITS_RECIPE, ROOT

VALID_RECIPE = yaml.safe_load(DIGITS_RECIPE)
VALID_PROFILE = yaml.safe_load((ROOT / "device_profiles" / "x86-cpu.yaml").read_text())
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


def schema_paths(model, prefix: tuple = ()) -> list[tuple[str, ...]]:
    """Every dotted key of a pydantic schema: mutations then reach deep fields, not only the top level."""
    from edgekd.config.loading import _unwrap

    paths = []
    for name, field in model.model_fields.items():
        path = prefix + (name,)
        paths.append(path)
        inner = _unwrap(field.annotation)
        if isinstance(inner, type) and hasattr(inner, "model_fields") and len(prefix) < 3:
            paths.extend(schema_paths(inner, path))
    return paths


RECIPE_PATHS = schema_paths(Recipe)
PROFILE_PATHS = schema_paths(Profile)
NASTY_TEXT = ["", " ", ".", "..", "../..", "/", "a/b", "~", "null", "yes", "no", "on", ".nan", ".inf", "-.inf",
              "1e400", "0x1F", "0o17", "!!python/object:os.system", "&a", "*a", "{", "[", "- -", "::", "'", '"',
              "\t", "\\x00", "é", "ℌ𝔢𝔩𝔩𝔬", "x" * 300, "builtin:", "hf:/nonexistent", "py:os:system",
              "py:os.path:", "hf:", "builtin:digits_cnn", "int8", "onnx", "pte"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NASTY_TEXT),
    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(NASTY_TEXT)),
                                                 inner, max_size=4)), max_leaves=12)


def set_path(doc: dict, path: tuple, value) -> None:
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def delete_path(doc: dict, path: tuple) -> None:
    node = doc
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


@st.composite
def documents(draw, valid: dict, paths: list[tuple[str, ...]]) -> bytes:
    """A valid document with a few mutations (wrong types, unknown keys, deletions, nesting), then maybe damaged
    at the text level (duplicate keys, alias bombs, tabs, bytes that are not UTF-8, truncation)."""
    import copy

    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["set", "set", "delete", "unknown", "nest"]))
        path = draw(st.sampled_from(paths))
        if kind == "set":
            set_path(doc, path, draw(values))
        elif kind == "delete":
            delete_path(doc, path)
        elif kind == "unknown":
            set_path(doc, path[:-1] + (draw(st.text(min_size=1, max_size=10)),), draw(scalars))
        else:
            set_path(doc, path, {draw(st.sampled_from([p[-1] for p in paths])): draw(values)})
    if draw(st.integers(0, 9)) == 0:
        doc = draw(values)  # not a mapping at all, sometimes
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    damage = draw(st.sampled_from(["none"] * 6 + ["duplicate", "bomb", "tab", "bytes", "truncate", "anchor"]))
    if damage == "duplicate" and isinstance(doc, dict) and doc:
        key = draw(st.sampled_from(sorted(map(str, doc))))
        text += f"{key}: 1\n"
    elif damage == "bomb":
        text = "b0: &b0 [x, x, x, x, x, x, x, x]\n" + "".join(
            f"b{i}: &b{i} [*b{i - 1}, *b{i - 1}, *b{i - 1}, *b{i - 1}, *b{i - 1}, *b{i - 1}]\n"
            for i in range(1, draw(st.integers(2, 12)))) + text
    elif damage == "tab":
        text = text.replace("  ", "\t", 1)
    elif damage == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "anchor":
        text = "shared: &s {a: 1}\n" + text + "more: *s\nother: *undefined\n"
    data = text.encode()
    if damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


overrides = st.lists(st.one_of(
    st.builds(lambda p, v: ".".join(p) + "=" + yaml.safe_dump(v, default_flow_style=True).strip().removesuffix(
        "\n...").removesuffix("..."), st.sampled_from(RECIPE_PATHS), values),
    st.builds(lambda p, v: "profile." + ".".join(p) + "=" + str(v), st.sampled_from(PROFILE_PATHS), scalars),
    st.sampled_from(["=", "a..b=1", ".=1", "novalue", "name=", "stages=[]", "model=1", "profile=1",
                     "stages.bench.runs=.nan", "seed=1e400", "x=&a [*a]", "y={a: 1, a: 2}"])), max_size=3)


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def expected_lines(call) -> int:
    """What the loader itself reports: one line per problem (or one for a single-message error)."""
    try:
        call()
    except EdgekdError as exc:
        return len(exc.problems) or 1
    return 0


def check(result, expected: int, folder: Path, before: set[str]) -> None:
    text = result.stderr
    event(f"exit {result.exit_code}")
    assert "Traceback" not in text and "Traceback" not in result.stdout, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, text)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if result.exit_code == 2:
        assert errors and all(len(e) < 4000 and not e.startswith("error: :") for e in errors), text
        assert all(line.startswith(("error: ", "  hint: ")) for line in text.splitlines() if line), text
    if expected >= 0:
        assert len(errors) == expected, (expected, text)
    assert tree(folder) == before, "an input was changed or a file was created"


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    yield here
    assert list(here.iterdir()) == [], "something was written into the working folder"


@settings(max_examples=700, **SETTINGS)
@given(recipe=documents(VALID_RECIPE, RECIPE_PATHS), sets=overrides)
def test_generated_recipes(cwd, recipe, sets):
    folder = Path(tempfile.mkdtemp(dir=cwd.parent))
    try:
        path = folder / "recipe.yaml"
        path.write_bytes(recipe)
        profile = ROOT / "device_profiles" / "x86-cpu.yaml"
        before = tree(folder)
        runner = CliRunner()
        check(runner.invoke(main, ["validate", str(path)]), expected_lines(lambda: load_any(path)), folder, before)
        args = ["show-config", "-p", str(profile), "-r", str(path)] + [a for s in sets for a in ("--set", s)]
        result = runner.invoke(main, args)
        check(result, expected_lines(lambda: load_recipe_and_profile(path, str(profile), sets)), folder, before)
        if result.exit_code == 0:
            shown = yaml.safe_load(result.stdout)
            assert Recipe.model_validate(shown["recipe"]) and Profile.model_validate(shown["profile"])
    finally:
        shutil.rmtree(folder)


@settings(max_examples=600, **SETTINGS)
@given(profile=documents(VALID_PROFILE, PROFILE_PATHS), sets=overrides)
def test_generated_profiles(cwd, profile, sets):
    folder = Path(tempfile.mkdtemp(dir=cwd.parent))
    try:
        (folder / "device_profiles").mkdir()
        path = folder / "device_profiles" / "p.yaml"
        path.write_bytes(profile)
        recipe = folder / "recipe.yaml"
        recipe.write_text(DIGITS_RECIPE)
        before = tree(folder)
        runner = CliRunner()
        check(runner.invoke(main, ["validate", str(path)]), expected_lines(lambda: load_any(path)), folder, before)
        check(runner.invoke(main, ["show-config", "-p", str(path), "-r", str(recipe)]
                            + [a for s in sets for a in ("--set", s)]),
              expected_lines(lambda: load_recipe_and_profile(recipe, str(path), sets)), folder, before)
    finally:
        shutil.rmtree(folder)


numbers = st.one_of(st.integers(-(2 ** 40), 2 ** 40).map(str), st.floats().map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "1e309", "", "0x10", "1_000", " 5", "٣"]))
paths_in = st.sampled_from(["recipe.yaml", "missing.yaml", "", ".", "folder", "blob.bin", "empty.onnx", "/dev/null",
                            "folder/../recipe.yaml", "x" * 300])
options = {
    "bench": ["-p", "-a", "--runner", "--host", "--port", "--user", "--key", "--warmup", "--runs", "--threads",
              "--cores", "--remote-python", "--remote-dir", "--serial", "--binary", "--junit", "--set"],
    "size check": ["--baseline", "--tolerance-bytes", "--tolerance-pct"],
    "lint": ["--target", "-p", "--json"],
    "show-config": ["-p", "-r", "--set"],
    "validate": [],
    "profiles show": [],
    "sensitivity": ["-p", "-r", "--samples", "--budget-mb", "--top", "--out", "--set"],
}


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(options)))
    args = command.split()
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["option", "option", "positional", "junk"]))
        if kind == "option" and options[command]:
            args += [draw(st.sampled_from(options[command])), draw(st.one_of(numbers, paths_in, st.text(max_size=12)))]
        elif kind == "positional":
            args.append(draw(paths_in))
        else:
            args.append(draw(st.one_of(st.text(max_size=12), st.sampled_from(["--", "-", "--debugx", "-pp"]))))
    return args


@settings(max_examples=700, **SETTINGS)
@given(args=command_lines())
def test_generated_command_lines(cwd, args):
    """Commands given junk: never a crash, exit 0 or 2 (1 is the gate code: never for bad input), no files."""
    folder = Path(tempfile.mkdtemp(dir=cwd.parent))
    try:
        (folder / "recipe.yaml").write_text(DIGITS_RECIPE)
        (folder / "folder").mkdir()
        (folder / "blob.bin").write_bytes(bytes(range(256)))
        (folder / "empty.onnx").write_bytes(b"")
        before = tree(folder)
        os.chdir(folder)
        try:
            result = CliRunner().invoke(main, args)
        finally:
            os.chdir(cwd)
        assert not (result.exit_code == 0 and args[0] in ("bench", "lint", "sensitivity")), result.stdout
        check(result, -1, folder, before)
    finally:
        shutil.rmtree(folder)


def test_vocabulary_reaches_deep_keys():
    """The generators above mutate nested fields (not only top-level keys), so the cases are not all trivial."""
    assert ("stages", "ptq", "keep_float") in RECIPE_PATHS and ("runner", "port") in PROFILE_PATHS
    assert math.isnan(yaml.safe_load(".nan"))
