"""Issue 19, defect 8 of the issue (newcomer paths): installing the project prints no setuptools deprecation wall
(``project.license`` as a TOML table was deprecated by setuptools 77 and printed a 12-line banner twice)."""

from __future__ import annotations

import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_applies_without_setuptools_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a SetuptoolsDeprecationWarning fails the test
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.get_name() == "steerable-vision"
