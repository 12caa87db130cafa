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
from edgekd.inputs import read_text

from .schema import Profile, Recipe

MAX_ALIAS_NODES = 10_000  # YAML nodes that aliases may add when expanded (a recipe uses a handful, a bomb billions)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PROFILE_DIRS = [Path.cwd() / "device_profiles", PROJECT_ROOT / "device_profiles"]
RECIPE_DIRS = [Path.cwd() / "recipes", PROJECT_ROOT / "recipes"]


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (libyaml's where installed) refusing duplicate keys and alias expansion past MAX_ALIAS_NODES.

    PyYAML keeps the last of two equal keys silently, and shares aliased nodes, so a few lines of `&a [*b, *b]`
    expand to billions of values only later, in validation or printing; both are refused here, with line numbers."""

    def get_single_node(self):
        node = super().get_single_node()
        _check_alias_expansion(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                    seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: the constructor reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r} (first on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _check_alias_expansion(root) -> None:
    """Count the nodes the document would have with every alias expanded, without expanding anything."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    nodes: dict[int, object] = {}
    refs: dict[int, int] = {}
    active: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = [] if isinstance(node, yaml.ScalarNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair])
        if done:
            active.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if id(node) in active:
            raise yaml.composer.ComposerError(None, None, "recursive alias (a node that contains itself)",
                                              node.start_mark)
        if id(node) in nodes:
            continue
        active.add(id(node))
        nodes[id(node)] = node
        stack.append((node, True))
        for c in children:
            refs[id(c)] = refs.get(id(c), 0) + 1
            stack.append((c, False))
    if sizes[id(root)] - len(nodes) > MAX_ALIAS_NODES:
        worst = max((i for i, n in refs.items() if n > 1), key=lambda i: sizes[i] * refs[i], default=id(root))
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand the document to {sizes[id(root)]} values (limit: {MAX_ALIAS_NODES} more "
            f"than written; the anchor here is used {refs.get(worst, 1)} times); write the values out instead",
            nodes[worst].start_mark)


def parse_yaml(text: str):
    """YAML text -> Python objects with StrictLoader (the one YAML parser for user input)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader


def read_yaml(path: Path, problems: ProblemList) -> dict | None:
    """Parse a YAML mapping; an unreadable file or a syntax error becomes a problem, not an exception."""
    try:
        text = read_text(path, what="YAML file")
    except EdgekdError as exc:
        problems.add(exc.file, exc.key, exc.message)
        return None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problems.add(str(path), where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
        return None
    except RecursionError:
        problems.add(str(path), "", "not valid YAML: nested too deeply")
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
        raise EdgekdError(f"override {text!r} is not key=value", key="--set", hint="e.g. stages.bench.runs=10")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or not all(p.strip() for p in parts):
        raise EdgekdError(f"override {text!r} has an empty key", key="--set", hint="e.g. stages.bench.runs=10")
    try:
        value = parse_yaml(raw) if raw != "" else ""
    except (yaml.composer.ComposerError, yaml.constructor.ConstructorError) as exc:  # aliases, duplicates, tags
        raise EdgekdError(f"override {key.strip()!r}: {getattr(exc, 'problem', None) or exc}", key="--set") from exc
    except (yaml.YAMLError, RecursionError):
        value = raw  # not YAML: the text itself (a path, a name with a colon)
    return [p.strip() for p in parts], value


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
        check_recipe_files(recipe, recipe_file, problems)
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
    if not is_profile:
        check_recipe_files(obj, path, problems)
    problems.raise_if_any(f"invalid {'profile' if is_profile else 'recipe'}")
    return obj


def check_recipe_files(recipe: Recipe | None, recipe_file: Path, problems: ProblemList) -> None:
    """The files a recipe names (model and data paths, relative to its folder) exist and hold what export loads:
    refused here, by `validate` and before any stage, instead of minutes into a run."""
    if recipe is None:
        return
    base = Path(recipe_file).parent

    def resolve(ref: str) -> Path:
        path = Path(ref).expanduser()
        return path if path.is_absolute() else base / path

    for key, source in (("model.source", recipe.model), ("teacher.source", recipe.teacher)):
        scheme, _, ref = source.source.partition(":") if source is not None else ("", "", "")
        target = ref.rpartition(":")[0] if scheme == "py" else ref
        if scheme in ("hf", "pt2") or (scheme == "py" and target.endswith(".py")):
            path = resolve(target)
            wanted = {"hf": path / "config.json", "pt2": path}.get(scheme, path)
            try:
                missing = not wanted.is_file()
            except OSError as exc:  # a name too long for the file system
                problems.add(str(path)[:200], key, f"cannot read: {exc.strerror or exc}")
                continue
            if missing:  # named in the recipe: the recipe file and key locate it, the message names the path
                what = "no config.json in the folder" if scheme == "hf" else "file not found"
                problems.add(str(recipe_file), key, f"{what}: {path}")
    if recipe.data.source.partition(":")[0] not in ("images", "arrays", "lines"):
        return  # builtin: and py: data load their own (importing edgekd.data.files would load torch)
    from edgekd.data.files import check_source

    try:
        found = check_source(recipe.data, base, recipe.model.input_shape)
    except OSError as exc:  # a name too long for the file system, a folder without read permission
        found = [(recipe.data.source, "data.source", f"cannot read: {exc.strerror or exc}", "")]
    for file, key, message, allowed in found:
        problems.add(file, key, message, allowed=allowed)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_profile(name: str, overrides: list[str]):
    """A device profile by name or path, with `key=value` overrides; every problem reported at once."""
    problems = ProblemList()
    path = find_profile(name)
    if path is None:
        problems.add("--profile", "profile", "unknown device profile", value=name,
                     allowed=", ".join(available_profiles()))
        problems.raise_if_any("invalid configuration")
    data = read_yaml(path, problems)
    problems.raise_if_any("invalid profile")
    profile = validate(Profile, apply_overrides(data, [o.removeprefix("profile.") for o in overrides]), str(path),
                       problems)
    problems.raise_if_any("invalid profile")
    return profile
