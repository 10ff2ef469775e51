"""Every user-facing CLI answers ``--help`` with its defaults, under its console-script name and under the
``python -m`` module paths that users and the committed manifests script against."""

from __future__ import annotations

import runpy
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# The module paths documented before the layout change (issue #15); each must keep working as written.
DOCUMENTED_MODULES = (
    "llava_demo.server",
    "llava_demo.cli",
    "llava_demo.anyres",
    "react_explorer.build_index",
    "react_explorer.retrieve",
    "trainer.eval",
    "trainer.recipe",
    "trainer.synthworld",
    "trainer.data_engine",
    "trainer.llava.train",
)


def run_help(call, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_user_facing_programs_are_console_scripts():
    assert {"llava-server", "llava-chat", "react-build-index", "react-retrieve", "sv-recipe", "llava-train",
            "sv-eval"} <= set(SCRIPTS)  # fmt: skip
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert installed == SCRIPTS  # the environment was installed from this pyproject.toml


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_help_lists_defaults(name, capsys):
    (entry,) = [ep for ep in entry_points(group="console_scripts") if ep.name == name]
    out = run_help(lambda: entry.load()(["--help"]), capsys)
    assert "usage:" in out
    subcommand_only = (
        "{" in out.splitlines()[0]
    )  # e.g. sv-eval {llava}: the subcommand's help has the defaults
    assert subcommand_only or "default" in out


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_documented_module_paths_still_run(module, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    out = run_help(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), capsys)
    assert "usage:" in out
