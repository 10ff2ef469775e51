"""Prompt templates and class names -> one query per (class, template), as REACT's retrieval does.

Template sets: ``openai`` (open_clip's ``OPENAI_IMAGENET_TEMPLATES``, the 80 of CLIP's ImageNet eval and of REACT),
``simple`` (``SIMPLE_IMAGENET_TEMPLATES``, 7), ``synthworld`` (4 alt-text-like prompts), or a text file with one template per line containing ``{}`` where
the class name goes (blank lines and lines starting with ``#`` are skipped).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from react_explorer.errors import QueryError
from react_explorer.retrieval.algorithms import PromptQuery

TEMPLATE_SETS = ("openai", "simple", "synthworld")
# The SynthWorld tiny CLIP's zero-shot ensemble, in the words of the pool's alt-text ("red star", "star icon",
# "ospin photo"): a prompt works best when it reads like the captions the text tower was trained on. The trainer's
# zero-shot evaluation uses the same set.
SYNTHWORLD_TEMPLATES: tuple[str, ...] = ("{}", "{} icon", "{} drawing", "{} photo")
SLOT = "{}"


def builtin_templates(name: str) -> tuple[str, ...]:
    """Template callables rendered as format strings (``"a photo of a {}."``).

    ``openai``/``simple`` are open_clip's; ``synthworld`` is the zero-shot ensemble of the SynthWorld tiny CLIP
    (``"{}"``, ``"{} icon"``, ...), worded like the alt-text captions that model was trained on.
    """
    if name == "synthworld":
        return SYNTHWORLD_TEMPLATES
    from open_clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES  # open_clip imports torch

    sets = {"openai": OPENAI_IMAGENET_TEMPLATES, "simple": SIMPLE_IMAGENET_TEMPLATES}
    if name not in sets:
        raise QueryError(f"unknown template set {name!r}; choose {TEMPLATE_SETS} or a file")
    return tuple(template(SLOT) for template in sets[name])


def load_templates(spec: str | os.PathLike[str]) -> tuple[str, ...]:
    """``openai``, ``simple`` or a template file; a file that does not exist is an error naming it."""
    if str(spec) in TEMPLATE_SETS:
        return builtin_templates(str(spec))
    path = Path(spec)
    if not path.is_file():
        raise QueryError(f"template file {path} not found (or use one of the sets {TEMPLATE_SETS})")
    return parse_template_lines(path.read_text(encoding="utf-8").splitlines(), str(path))


def parse_template_lines(lines: Sequence[str], source: str) -> tuple[str, ...]:
    templates = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.count(SLOT) != 1:
            raise QueryError(
                f"{source}:{number}: a template needs exactly one {SLOT} for the class name: {line!r}"
            )
        try:
            line.format("x")
        except (IndexError, KeyError, ValueError) as exc:
            raise QueryError(
                f"{source}:{number}: braces other than {SLOT} must be doubled: {line!r}"
            ) from exc
        templates.append(line)
    if not templates:
        raise QueryError(f"template file {source} has no templates")
    if len(set(templates)) != len(templates):
        raise QueryError(f"template file {source} repeats a template")
    return tuple(templates)


def parse_class_names(text: str) -> tuple[str, ...]:
    """Comma- or newline-separated names, trimmed, duplicates dropped (first kept); none at all is an error."""
    names: list[str] = []
    for part in text.replace("\n", ",").split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise QueryError("the class list is empty: give at least one class name")
    return tuple(names)


def read_class_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """A ``classes.txt`` (one class per line, as SynthWorld's and ELEVATER's tasks)."""
    path = Path(path)
    if not path.is_file():
        raise QueryError(f"class file {path} not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise QueryError(f"class file {path} is empty")
    return parse_class_names("\n".join(names))


def expand_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[PromptQuery]:
    """Class-major list of prompts: len(class_names) * len(templates) queries."""
    if not class_names:
        raise QueryError("the class list is empty: give at least one class name")
    if not templates:
        raise QueryError("no templates given")
    return [
        PromptQuery(class_name=name, template=template, text=template.format(name))
        for name in class_names
        for template in templates
    ]
