"""Lint findings as data: one Violation per (rule, node), a LintResult that says pass/fail and serialises."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class Violation:
    """One finding: which rule, on which node, what is wrong, and what to change so it goes away."""

    rule: str  # e.g. "TRT001"
    name: str  # short slug, e.g. "nonzero-zero-point"
    node: str
    message: str
    fix: str
    severity: str = "error"  # error: TensorRT fails or silently loses int8; warning: slower or less accurate

    def render(self) -> str:
        return f"{self.severity:7s} {self.rule} {self.name} [{self.node}]: {self.message}\n        fix: {self.fix}"


@dataclass
class LintResult:
    path: str
    target: str
    violations: list[Violation] = field(default_factory=list)
    checks_run: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why (nothing skipped silently)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_rule(self) -> dict[str, int]:
        return dict(Counter(v.rule for v in self.violations))

    def summary(self) -> dict:
        """Small enough for the manifest: verdict, counts per rule, and the first few findings."""
        return {"target": self.target, "ok": self.ok, "errors": len(self.errors),
                "warnings": len(self.violations) - len(self.errors), "by_rule": self.by_rule(),
                "checks_run": list(self.checks_run), "notes": list(self.notes),
                "first": [asdict(v) for v in self.violations[:10]]}

    def to_dict(self) -> dict:
        return {"path": self.path, **self.summary(), "violations": [asdict(v) for v in self.violations]}
