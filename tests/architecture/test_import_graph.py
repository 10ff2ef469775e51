"""The layout rules of docs/architecture.md as tests over the source (AST only: nothing is imported).

import-linter (``lint-imports`` in scripts/test) checks the layer contracts; these tests add what it does not:
no import cycle anywhere inside the packages, no function-local project import except the documented ones, and
the size limits that keep every folder readable.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vision_common", "llava_demo", "react_explorer", "trainer", "app_shell")
# Function-local project imports that are deliberate, each with its reason in a comment at the import.
DOCUMENTED_LOCAL_IMPORTS = {
    ("llava_demo/backends/factory.py", "llava_demo.backends.local"),
    ("react_explorer/cli/build_index.py", "react_explorer.embedding.embed_pool"),
    ("react_explorer/cli/build_index.py", "react_explorer.embedding.encoders"),
}
MAX_TOP_LEVEL_MODULES = 10
MAX_FILE_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def project_imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[ast.stmt, str]]:
    """(node, imported module) for every import of a project module, relative imports resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            for name in names or [target]:
                if name.split(".")[0] in PACKAGES:
                    found.append((node, name))
        elif isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names if a.name.split(".")[0] in PACKAGES]
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports at module level (``from pkg import mod`` resolves to ``pkg.mod``)."""
    files = {module_name(p): p for p in source_files()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                 for n in ast.walk(fn)}  # fmt: skip
        edges = set()
        for node, target in project_imports(tree, name, path.name == "__init__.py"):
            if id(node) in local:
                continue
            while target and target not in files:
                target = target.rpartition(".")[0]  # an attribute of a module: the module itself
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None; iterative DFS with colours."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child, 2) == 1:
                return path[path.index(child) :] + [child]
            elif colour.get(child) == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_cycle_finder_finds_a_hand_made_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_packages_have_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 150  # the walk saw the packages
    assert find_cycle(graph) is None


def test_no_function_local_project_imports_except_documented_ones():
    found = set()
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        name = module_name(path)
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                body = ast.Module(body=fn.body, type_ignores=[])
                for _node, target in project_imports(body, name, path.name == "__init__.py"):
                    found.add((str(path.relative_to(ROOT)), target.rsplit(".", 1)[0]))
    assert found <= DOCUMENTED_LOCAL_IMPORTS, sorted(found - DOCUMENTED_LOCAL_IMPORTS)


@pytest.mark.parametrize("package", ["llava_demo", "react_explorer", "trainer"])
def test_pillar_top_levels_stay_small(package):
    modules = [p for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, sorted(p.name for p in modules)


def test_no_file_is_over_the_line_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in source_files()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long


def test_the_committed_layer_picture_is_drawn_from_the_current_code():
    spec = importlib.util.spec_from_file_location(
        "architecture_graph", ROOT / "scripts" / "architecture_graph.py"
    )
    graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph)
    committed = (ROOT / "docs" / "architecture.dot").read_text()
    assert graph.to_dot(*graph.group_edges()) == committed, "run: python scripts/architecture_graph.py"
