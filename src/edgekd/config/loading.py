"""Load recipes and profiles from YAML, apply `key=value` overrides, and report every problem at once.

Pydantic's errors are translated into `Problem`s that name the file, the dotted key, the bad value and what is
allowed, so a user fixes a recipe in one edit instead of one error per run.
"""

from __future__ import annotations

import hashlib
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.errors import EdgekdError, ProblemList

from .schema import Profile, Recipe

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PROFILE_DIRS = [Path.cwd() / "device_profiles", PROJECT_ROOT / "device_profiles"]
RECIPE_DIRS = [Path.cwd() / "recipes", PROJECT_ROOT / "recipes"]


def read_yaml(path: Path, problems: ProblemList) -> dict | None:
    """Parse a YAML mapping; a missing file or a syntax error becomes a problem, not an exception."""
    if not path.is_file():
        problems.add(str(path), "", "file not found")
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problems.add(str(path), where, f"not valid YAML: {getattr(exc, 'problem', exc)}")
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.add(str(path), "", "top level must be a mapping", type(data).__name__)
        return None
    return data


def parse_override(text: str) -> tuple[list[str], object]:
    """`stages.bench.runs=10` -> (["stages","bench","runs"], 10); the value is parsed as YAML (numbers, lists)."""
    if "=" not in text:
        raise EdgekdError(f"override {text!r} is not key=value", hint="e.g. stages.bench.runs=10")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise EdgekdError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return data


def _allowed_for(model: type[BaseModel], loc: tuple) -> str:
    """The allowed keys or literal values at a location in a schema, for the error message."""
    current: object = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return ", ".join(sorted(fields)) if fields else ""
        current = _unwrap(fields[part].annotation)
    args = typing.get_args(current)
    if typing.get_origin(current) is typing.Literal:
        return ", ".join(map(str, args))
    return ""


def _unwrap(annotation):
    """Strip Optional/list wrappers so the nested schema or Literal is reachable."""
    for _ in range(4):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
        if origin is typing.Literal or not args:
            return annotation
        if origin in (list, dict):
            annotation = args[-1]
        elif len(args) == 1 or all(isinstance(a, type) and issubclass(a, BaseModel) for a in args[:1]):
            annotation = args[0]
        else:
            return annotation
    return annotation


def _value_at(data: object, loc: tuple) -> object:
    for part in loc:
        try:
            data = data[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def validate(model: type[BaseModel], data: dict, file: str, problems: ProblemList):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            dotted = ".".join(str(p) for p in loc)
            if err["type"] == "extra_forbidden":
                parent = loc[:-1]
                problems.add(file, dotted, "unknown key", allowed=_allowed_for(model, parent + ("__none__",))
                             or _allowed_for(model, parent))
            elif err["type"] == "missing":
                problems.add(file, dotted, "required key is missing")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.add(file, dotted, msg, value=_value_at(data, loc), allowed=_allowed_for(model, loc))
        return None


def find_profile(name_or_path: str) -> Path | None:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    for folder in PROFILE_DIRS:
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    return None


def available_profiles() -> list[str]:
    names = set()
    for folder in PROFILE_DIRS:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def available_recipes() -> list[Path]:
    for folder in RECIPE_DIRS:
        if folder.is_dir():
            return sorted(folder.glob("*/*.yaml"))
    return []


def load_recipe_and_profile(recipe_path: str | Path, profile: str, overrides: list[str] = (),
                            ) -> tuple[Recipe, Profile, Path, Path]:
    """Load both inputs and raise one `EdgekdError` listing every problem in either of them."""
    problems = ProblemList()
    recipe_file = Path(recipe_path)
    recipe_data = read_yaml(recipe_file, problems)
    profile_file = find_profile(profile)
    profile_data = None
    if profile_file is None:
        problems.add("--profile", "profile", "unknown device profile", value=profile,
                     allowed=", ".join(available_profiles()))
    else:
        profile_data = read_yaml(profile_file, problems)
    recipe_overrides = [o for o in overrides if not o.startswith("profile.")]
    profile_overrides = [o.removeprefix("profile.") for o in overrides if o.startswith("profile.")]
    recipe = profile_obj = None
    if recipe_data is not None:
        recipe = validate(Recipe, apply_overrides(recipe_data, recipe_overrides), str(recipe_file), problems)
    if profile_data is not None:
        profile_obj = validate(Profile, apply_overrides(profile_data, profile_overrides), str(profile_file), problems)
    problems.raise_if_any("invalid configuration")
    return recipe, profile_obj, recipe_file, profile_file


def load_any(path: Path) -> BaseModel:
    """Validate one file as a recipe or a profile (decided by its folder or its keys); used by `edgekd validate`."""
    problems = ProblemList()
    data = read_yaml(path, problems)
    problems.raise_if_any(f"cannot read {path}")
    is_profile = "device_profiles" in path.parts or ("backend" in data and "model" not in data)
    obj = validate(Profile if is_profile else Recipe, data, str(path), problems)
    problems.raise_if_any(f"invalid {'profile' if is_profile else 'recipe'}")
    return obj


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
