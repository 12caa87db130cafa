"""Errors users see, and the exit codes they map to.

Rule 4 of docs/architecture.md: exit 0 when every budget holds, 1 when a budget, accuracy or size gate fails, 2 for
bad input or a
tool error. Users get an `EdgekdError` that names the file, the dotted key and what is allowed, never a traceback;
bugs stay `InternalError` so they are not mistaken for user mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2


@dataclass
class Problem:
    """One thing wrong with one input: where it is, what it is, and what would be accepted."""

    file: str
    key: str
    message: str
    value: object = None
    allowed: str = ""

    def render(self) -> str:
        text = ": ".join(part for part in (shown_file(self.file), self.key, self.message) if part)
        if self.value is not None:
            text += f" (got {short_repr(self.value)})"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text


class EdgekdError(Exception):
    """A problem with the user's input or environment; reported on one line per problem, exit code 2 by default."""

    def __init__(self, message: str, *, file: str = "", key: str = "", hint: str = "", code: int = EXIT_BAD_INPUT,
                 problems: list[Problem] | None = None):
        self.message = message
        self.file = file
        self.key = key
        self.hint = hint
        self.code = code
        self.problems = problems or []
        super().__init__(self.render())

    def render(self) -> str:
        head = ": ".join(part for part in (shown_file(self.file), self.key, self.message) if part)
        lines = [head] + [f"  - {p.render()}" for p in self.problems]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def error_lines(self) -> list[str]:
        """What the CLI prints after `error: `: one line per problem (or the message), then the hint indented.

        Scripts and CI logs count problems by counting `error:` lines, so a problem never spans two lines."""
        heads = [p.render() for p in self.problems] or [": ".join(
            part for part in (shown_file(self.file), self.key, self.message) if part)]
        lines = [f"error: {' '.join(h.split())}" for h in heads]
        if self.hint:
            lines.append(f"  hint: {' '.join(self.hint.split())}")
        return lines


class GateFailed(EdgekdError):
    """A budget, accuracy or size gate failed: the run itself worked, the result is not good enough (exit 1)."""

    def __init__(self, message: str, **kw):
        super().__init__(message, code=EXIT_GATE_FAILED, **kw)


class InternalError(RuntimeError):
    """A bug in edgekd: reported as "internal error" with where it happened (the traceback with --debug), never
    disguised as a user error."""


def shown_file(name: str) -> str:
    """A file name as an error line shows it: quoted when blanks at its ends or control characters would hide it."""
    return repr(name) if name and (name != name.strip() or not name.isprintable()) else name


def short_repr(value: object, limit: int = 120) -> str:
    """repr() cut to `limit` characters: an error line quotes a bad value, never a megabyte of it (YAML aliases)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass
class ProblemList:
    """Collects problems so every one of them is reported at once (docs/architecture.md, rule 3)."""

    items: list[Problem] = field(default_factory=list)

    def add(self, file: str, key: str, message: str, value: object = None, allowed: str = "") -> None:
        self.items.append(Problem(file, key, message, value, allowed))

    def raise_if_any(self, summary: str) -> None:
        if self.items:
            raise EdgekdError(f"{summary}: {len(self.items)} problem(s)", problems=list(self.items))
