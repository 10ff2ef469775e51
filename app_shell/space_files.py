"""Files a Hugging Face Space needs: ``requirements.txt`` (the project's dependencies, as pyproject.toml lists
them) and a README whose front matter (sdk, sdk_version, app_file, python_version) comes from
``docs/spaces_README.md``.

    python -m app_shell.space_files --out dist/space     # write README.md + requirements.txt there
    python -m app_shell.space_files --check              # is the committed requirements.txt current?

Spaces installs ``requirements.txt`` before the repository is copied in, so it cannot say ``.``; it repeats the
dependency list instead, and a test keeps the two identical.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vision_common.atomic import atomic_write_text
from vision_common.paths import PROJECT_ROOT

PYPROJECT = PROJECT_ROOT / "pyproject.toml"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
FRONT_MATTER_SOURCE = PROJECT_ROOT / "docs" / "spaces_README.md"
PROJECT_README = PROJECT_ROOT / "README.md"
REQUIREMENTS_HEADER = (
    "# Generated from pyproject.toml [project.dependencies] by `python -m app_shell.space_files`;\n"
    "# Hugging Face Spaces installs this file (tests/app_shell/test_app_spaces.py keeps it in sync).\n"
)


class SpaceFilesError(ValueError):
    """A source file is missing or malformed; the message names it."""


def project_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    try:
        import tomllib
    except ImportError as exc:  # Python 3.10
        raise SpaceFilesError("reading pyproject.toml needs Python 3.11+ (tomllib)") from exc
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpaceFilesError(f"{pyproject}: {exc}") from exc
    dependencies = document.get("project", {}).get("dependencies")
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise SpaceFilesError(f"{pyproject}: [project] dependencies must be a list of strings")
    return dependencies


def requirements_text(pyproject: Path = PYPROJECT) -> str:
    return REQUIREMENTS_HEADER + "".join(f"{dependency}\n" for dependency in project_dependencies(pyproject))


def front_matter(source: Path = FRONT_MATTER_SOURCE) -> str:
    """The ``---`` ... ``---`` block at the top of ``source``, delimiters included."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpaceFilesError(f"{source}: {exc.strerror or exc}") from exc
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise SpaceFilesError(f"{source}: must start with a '---' front-matter block")
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "".join(lines[: end + 1])
    raise SpaceFilesError(f"{source}: the front-matter block has no closing '---'")


def front_matter_fields(block: str) -> dict[str, str]:
    """Top-level ``key: value`` pairs of a front-matter block (lists and nesting are skipped)."""
    fields = {}
    for line in block.splitlines()[1:-1]:
        if line[:1].isspace() or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def space_readme(source: Path = FRONT_MATTER_SOURCE, readme: Path = PROJECT_README) -> str:
    return front_matter(source) + "\n" + readme.read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app_shell.space_files", description=__doc__.split("\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="folder to write README.md and requirements.txt into")
    action.add_argument("--check", action="store_true", help="exit 1 when requirements.txt is out of date")
    action.add_argument(
        "--write-requirements", action="store_true", help="rewrite the repository's requirements.txt"
    )
    args = parser.parse_args(argv)
    try:
        expected = requirements_text()
        if args.check:
            current = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.exists() else ""
            if current != expected:
                print(f"{REQUIREMENTS} is out of date; run with --write-requirements", file=sys.stderr)
                return 1
            return 0
        if args.write_requirements:
            atomic_write_text(REQUIREMENTS, expected)
            return 0
        atomic_write_text(args.out / "requirements.txt", expected)
        atomic_write_text(args.out / "README.md", space_readme())
    except SpaceFilesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'README.md'} and {args.out / 'requirements.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
