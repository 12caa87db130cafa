"""Per-layer precision as data (docs/architecture.md, rule 7): exact module name, then `re:` pattern, then `_default`.

The shape is torchao's FqnToConfig: a flat mapping whose keys are module FQNs (as `named_modules()` spells them),
regular expressions prefixed with `re:` (matched with `re.fullmatch`, tried in file order) and `_default`. A plan is
written by the mixed_precision stage (solved under a size budget) or by hand, saved as JSON beside the artifacts and
loaded by a later run; every exporter reads the same plan so the .pte, the ONNX files and the TensorRT engine agree.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from edgekd.errors import EdgekdError, Problem

PRECISIONS = ("fp32", "fp16", "int8", "int4")
FLOAT_PRECISIONS = ("fp32", "fp16")
PLAN_VERSION = 1


@dataclass
class PrecisionPlan:
    """Rules mapping module names to a precision; `meta` carries how the plan was made (budget, estimates)."""

    rules: dict[str, str] = field(default_factory=lambda: {"_default": "int8"})
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # file it was loaded from, for error messages

    def __post_init__(self) -> None:
        problems = []
        for key, precision in self.rules.items():
            if precision not in PRECISIONS:
                problems.append(Problem(self.source or "plan", f"rules.{key}", "unknown precision", precision,
                                        ", ".join(PRECISIONS)))
            if key.startswith("re:"):
                try:
                    re.compile(key[3:])
                except re.error as exc:
                    problems.append(Problem(self.source or "plan", f"rules.{key}", f"bad regular expression: {exc}"))
        if problems:
            raise EdgekdError("invalid precision plan", file=self.source, problems=problems)

    @property
    def default(self) -> str:
        return self.rules.get("_default", "int8")

    def resolve(self, module_name: str) -> str:
        """The precision of one module: its exact rule, else the first `re:` rule that fully matches, else default."""
        if module_name in self.rules:
            return self.rules[module_name]
        for key, precision in self.rules.items():
            if key.startswith("re:") and re.fullmatch(key[3:], module_name):
                return precision
        return self.default

    def resolve_all(self, module_names: Iterable[str]) -> dict[str, str]:
        return {name: self.resolve(name) for name in module_names}

    def float_layers(self, module_names: Iterable[str]) -> dict[str, str]:
        """Layers the plan keeps in floating point ({name: fp32|fp16}): what quantizers must leave out."""
        return {n: p for n, p in self.resolve_all(module_names).items() if p in FLOAT_PRECISIONS}

    def validate(self, module_names: Iterable[str], *, file: str | None = None) -> None:
        """Every exact name must be a module and every `re:` rule must match one; else exit 2 with close matches."""
        names = list(module_names)
        known = set(names)
        where = file or self.source or "precision plan"
        problems = []
        for key in self.rules:
            if key == "_default":
                continue
            if key.startswith("re:"):
                if not any(re.fullmatch(key[3:], n) for n in names):
                    problems.append(Problem(where, f"rules.{key}", "pattern matches no quantizable layer",
                                            allowed=", ".join(names[:6]) + (" ..." if len(names) > 6 else "")))
            elif key not in known:
                close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
                hint = f"did you mean: {', '.join(close)}" if close else "see `edgekd sensitivity` for layer names"
                problems.append(Problem(where, f"rules.{key}", f"no layer named {key!r} in the model; {hint}"))
        if problems:
            first = problems[0].key.removeprefix("rules.")
            raise EdgekdError(f"the plan names {len(problems)} layer(s) the model does not have (first: {first!r})",
                              file=where, problems=problems)

    def to_dict(self) -> dict[str, Any]:
        return {"version": PLAN_VERSION, "rules": dict(self.rules), "meta": self.meta}

    def save(self, path: Path) -> Path:
        from edgekd.report.atomic import write_json

        return write_json(Path(path), self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> "PrecisionPlan":
        if not isinstance(data, dict) or not isinstance(data.get("rules"), dict):
            raise EdgekdError("a precision plan is a JSON object with a 'rules' object", file=source, key="rules",
                              hint='{"rules": {"_conv_stem": "fp32", "re:.*_fc": "fp16", "_default": "int8"}}')
        version = data.get("version", PLAN_VERSION)
        if version != PLAN_VERSION:
            raise EdgekdError("unsupported plan version", file=source, key="version",
                              hint=f"allowed: {PLAN_VERSION} (got {version!r})")
        return cls(rules={str(k): str(v) for k, v in data["rules"].items()}, meta=dict(data.get("meta", {})),
                   source=source)

    @classmethod
    def load(cls, path: Path) -> "PrecisionPlan":
        path = Path(path)
        if not path.is_file():
            raise EdgekdError("precision plan file not found", file=str(path), key="stages.mixed_precision.plan")
        from edgekd.inputs import read_json

        data = read_json(path, key="stages.mixed_precision.plan", what="precision plan", expect=object)
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_choices(cls, choices: dict[str, str], meta: dict[str, Any] | None = None) -> "PrecisionPlan":
        """A plan from per-layer choices: the most common precision becomes `_default`, the rest exact names."""
        from collections import Counter

        default = Counter(choices.values()).most_common(1)[0][0] if choices else "int8"
        rules = {n: p for n, p in choices.items() if p != default}
        rules["_default"] = default
        return cls(rules=rules, meta=dict(meta or {}))


def quantizable_layers(module) -> list[str]:
    """Module FQNs of the layers a plan talks about: every Conv1d/2d and Linear, in `named_modules()` order."""
    import torch

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    return [name for name, m in module.named_modules() if isinstance(m, kinds) and name]
