"""The test suite's own layout rules (AST only): tests mirror the packages, every test folder is a package (so
two modules may share a basename), and a test that starts a process itself is marked ``slow``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests"
PACKAGES = ("vision_common", "llava_demo", "react_explorer", "trainer", "app_shell")
# Folders that are not a package's mirror: cross-cutting suites and the shared helpers.
OTHER_FOLDERS = ("architecture", "browser", "support")
# Calls that start another process. Servers started in a thread (uvicorn, Gradio) are marked by hand.
SPAWNING_CALLS = {"run", "Popen", "check_call", "check_output"}  # subprocess.<name>


def folders_under_tests() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__")


def test_no_test_module_sits_at_the_tests_root():
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []


def test_top_level_folders_are_the_packages_and_the_named_others():
    top = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top == {*PACKAGES, *OTHER_FOLDERS}


def test_every_test_folder_is_a_package():
    missing = [
        str(p.relative_to(REPO_ROOT))
        for p in [TESTS, *folders_under_tests()]
        if not (p / "__init__.py").is_file()
    ]
    assert missing == []


def _marks_slow(decorators: list[ast.expr]) -> bool:
    return any("mark.slow" in ast.unparse(d) for d in decorators)


def _module_is_slow(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
            if "mark.slow" in ast.unparse(node.value):
                return True
    return False


def _is_subprocess_call(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "subprocess"
        and func.attr in SPAWNING_CALLS
    )


def _asks_for_worker_processes(call: ast.Call) -> bool:
    """``num_workers=N >= 1`` (DataLoader workers) or ``workers=N >= 2`` (process pools) as a literal."""
    least = {"num_workers": 1, "workers": 2}
    return any(
        k.arg in least and isinstance(k.value, ast.Constant) and isinstance(k.value.value, int)
        and k.value.value >= least[k.arg]
        for k in call.keywords
    )  # fmt: skip


def _spawns(node: ast.AST) -> bool:
    calls = [c for c in ast.walk(node) if isinstance(c, ast.Call)]
    return any(_is_subprocess_call(c) or _asks_for_worker_processes(c) for c in calls)


def test_tests_and_fixtures_that_spawn_a_process_are_slow():
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        if _module_is_slow(tree):
            continue
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        # Fixtures and helpers that spawn, one level deep: a test spawns if it takes or calls one of them.
        helpers = {f.name for f in functions if _spawns(f) and not f.name.startswith("test_")}
        for f in functions:
            if not f.name.startswith("test_") or _marks_slow(f.decorator_list):
                continue
            called = {
                c.func.id for c in ast.walk(f) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
            }
            if _spawns(f) or ({a.arg for a in f.args.args} | called) & helpers:
                unmarked.append(f"{path.relative_to(REPO_ROOT)}::{f.name}")
    assert unmarked == []
