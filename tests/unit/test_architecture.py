"""The layout rules of docs/architecture.md, checked on the source tree: no import cycle (imports inside functions
and `if TYPE_CHECKING:` blocks count), one home for onnxruntime's quantization API and for onnxruntime sessions,
small modules, and comments that cite only documents the repository has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted((SRC / "edgekd").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _resolve(module: str, node: ast.AST) -> set[str]:
    """The edgekd modules an import statement loads (the nearest existing module for `from pkg import name`)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            if MODULES[module].name != "__init__.py":
                parts = parts[:-1]
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("edgekd"):
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _resolve(module, node)
        graph[module] = deps - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _files_matching(pattern: str) -> set[str]:
    regex = re.compile(pattern)
    return {str(p.relative_to(SRC)) for p in MODULES.values() if regex.search(p.read_text())}


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_edgekd() -> None:
    assert cycles(import_graph()) == []


def test_onnxruntime_quantization_api_has_one_home() -> None:
    assert _files_matching(r"onnxruntime\.quantization") == {"edgekd/quant/ort.py"}


def test_onnxruntime_sessions_are_built_in_one_module() -> None:
    # bench/measure.py is copied to boards and run there as a script: it cannot import edgekd
    assert _files_matching(r"InferenceSession\(") == {"edgekd/runtime/sessions.py", "edgekd/bench/measure.py"}


def test_no_module_over_the_size_limit() -> None:
    too_long = {str(p.relative_to(SRC)): n for p in MODULES.values()
                if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}


def test_stage_order_lives_only_in_pipeline() -> None:
    assert _files_matching(r"\bSTAGES\s*(:[^=]*)?=") == {"edgekd/pipeline.py"}


def test_comments_cite_documents_the_repository_has() -> None:
    assert _files_matching(r"DESIGN\.md|house rule") == set()
    cited = set()
    for path in MODULES.values():
        cited |= set(re.findall(r"\b(docs/[\w./-]+\.md)", path.read_text()))
    assert cited and all((ROOT / doc).is_file() for doc in cited), cited


def test_readme_layout_names_every_package() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    listed = set(re.findall(r"^\s+(\w+)/", layout, flags=re.M))
    packages = {p.parent.name for p in (SRC / "edgekd").glob("*/__init__.py")}
    assert packages <= listed, sorted(packages - listed)
    modules = {p.name for p in (SRC / "edgekd").glob("*.py") if p.name != "__init__.py"}
    assert all(m in layout for m in modules), sorted(m for m in modules if m not in layout)
