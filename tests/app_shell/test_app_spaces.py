"""Hugging Face Spaces readiness: requirements.txt equals pyproject's dependencies, the front matter pins the
Gradio the app is tested with, and the Space README is the front matter plus the project README."""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from app_shell import space_files
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="tomllib (Python 3.11+) reads pyproject.toml"
)


def test_requirements_txt_is_the_pyproject_dependency_list():
    committed = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert committed == space_files.requirements_text(), (
        "run: python -m app_shell.space_files --write-requirements"
    )
    listed = [Requirement(line) for line in committed.splitlines() if line and not line.startswith("#")]
    assert [str(r) for r in listed] == [str(Requirement(d)) for d in space_files.project_dependencies()]
    assert space_files.main(["--check"]) == 0


def test_front_matter_pins_the_tested_gradio_and_a_supported_python():
    fields = space_files.front_matter_fields(space_files.front_matter())
    assert (fields["sdk"], fields["app_file"]) == ("gradio", "app.py")
    assert (REPO_ROOT / fields["app_file"]).is_file()
    gradio_range = next(Requirement(d) for d in space_files.project_dependencies() if d.startswith("gradio"))
    assert Version(fields["sdk_version"]) in gradio_range.specifier
    assert fields["sdk_version"] == version("gradio")  # Spaces runs the Gradio the tests ran
    import tomllib

    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(fields["python_version"]) in SpecifierSet(requires)


def test_space_readme_is_front_matter_then_the_project_readme(tmp_path):
    assert space_files.main(["--out", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    block = space_files.front_matter()
    assert readme.startswith(block) and readme.endswith((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert (tmp_path / "requirements.txt").read_text() == space_files.requirements_text()
    broken = tmp_path / "no_front_matter.md"
    broken.write_text("# just a title\n")
    with pytest.raises(space_files.SpaceFilesError, match="must start with a '---'"):
        space_files.front_matter(broken)
