"""The model registry: named presets stored as data (``presets.json``), validated when loaded.

The original demo sniffed the model type and template from the checkpoint folder name in five places
(llava.md §2). Here the template, backend and SGLang launch hints are explicit data, checked at start-up:
an unknown template or a mismatched SGLang template is an error that names the preset, not a KeyError in
the middle of a chat.

``resolve_model`` turns what a user typed (a preset name, a local directory or a hub id) into one
``ResolvedModel`` record; a checkpoint that is not registered gets ``template=None``, which tells
``choose_template`` to rely on the checkpoint's own chat template.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from vision_common.chat.templates import UnknownTemplateError, get_template
from vision_common.paths import PROJECT_ROOT  # local preset paths are relative to the project root

Backend = Literal["transformers", "sglang"]
BACKENDS: tuple[Backend, ...] = ("transformers", "sglang")
Source = Literal["hub", "local"]
SOURCES: tuple[Source, ...] = ("hub", "local")
DEFAULT_PRESETS_PATH = Path(__file__).with_name("presets.json")

PRESETS_FORMAT_VERSION = 1
# "owner/name" with Hugging Face's allowed characters; a path with more components is a path.
HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# SGLang 0.5.23 built-in templates this project has checked (serving.md §2), mapped to the builtin template
# that renders identically (None: no exact equivalent here, e.g. chatml-llava adds "\n" after <|im_end|>).
SGLANG_TEMPLATE_EQUIVALENTS: Mapping[str, str | None] = MappingProxyType(
    {"vicuna_v1.1": "vicuna_v1", "llava_llama_3": "llama_3", "chatml-llava": None}
)


class PresetError(ValueError):
    """The presets file or one preset is invalid; the message names the file, the preset and the field."""


class UnknownModelError(LookupError):
    """A model name is neither a preset, an existing directory nor a hub id; the message lists presets."""


@dataclass(frozen=True)
class ModelPreset:
    """One registry entry. ``checkpoint`` is a hub id (``source="hub"``) or a project-relative path."""

    name: str
    checkpoint: str
    source: Source
    template: str
    backend: Backend
    sglang_chat_template: str | None = None
    sglang_extra_args: tuple[str, ...] = ()
    notes: str = ""
    card: str = ""
    """One line for users: what the model is and knows (shown under the chat's model selector)."""
    image_only: bool = False
    """Trained only on conversations about an image: a turn without one is answered by ``backends.image_only``
    instead of the model, which would describe an image that is not there (issue 19)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise PresetError("preset name must not be empty")
        where = f"preset {self.name!r}"
        if not self.checkpoint:
            raise PresetError(f"{where}: field 'checkpoint' must not be empty")
        if self.source not in SOURCES:
            raise PresetError(f"{where}: field 'source' must be one of {SOURCES}, got {self.source!r}")
        if self.source == "hub" and not HUB_ID_PATTERN.fullmatch(self.checkpoint):
            raise PresetError(f"{where}: field 'checkpoint' {self.checkpoint!r} is not a hub id (owner/name)")
        if self.backend not in BACKENDS:
            raise PresetError(f"{where}: field 'backend' must be one of {BACKENDS}, got {self.backend!r}")
        try:
            get_template(self.template)
        except UnknownTemplateError as exc:
            raise PresetError(f"{where}: field 'template': {exc}") from exc
        if self.backend == "sglang" and not self.sglang_chat_template:
            # SGLang falls back to the tokenizer's text-only template, which drops images (serving.md §2).
            raise PresetError(f"{where}: backend 'sglang' needs 'sglang_chat_template'")
        if self.sglang_chat_template is not None:
            self._check_sglang_template(where)

    def _check_sglang_template(self, where: str) -> None:
        name = self.sglang_chat_template
        if name not in SGLANG_TEMPLATE_EQUIVALENTS:
            raise PresetError(
                f"{where}: field 'sglang_chat_template' {name!r} is not one of the checked SGLang templates "
                f"{sorted(SGLANG_TEMPLATE_EQUIVALENTS)}"
            )
        equivalent = SGLANG_TEMPLATE_EQUIVALENTS[name]
        # /generate gets prompts rendered by our template, /v1/chat/completions by SGLang's: they must agree.
        if equivalent is not None and get_template(self.template).name != equivalent:
            raise PresetError(
                f"{where}: template {self.template!r} renders differently from SGLang's {name!r}; "
                f"use {equivalent!r}"
            )


@dataclass(frozen=True)
class ResolvedModel:
    """What to load and how. ``template`` is None for unregistered checkpoints (use their chat template)."""

    name: str
    checkpoint: str
    source: Source
    backend: Backend
    template: str | None = None
    sglang_chat_template: str | None = None
    sglang_extra_args: tuple[str, ...] = ()
    notes: str = ""
    preset: ModelPreset | None = field(default=None, compare=False)

    @property
    def image_only(self) -> bool:
        return self.preset is not None and self.preset.image_only

    def __post_init__(self) -> None:
        if self.template is not None:
            get_template(self.template)  # UnknownTemplateError lists the valid names


_REQUIRED_FIELDS = {"checkpoint": str, "source": str, "template": str, "backend": str}
_OPTIONAL_FIELDS = {
    "sglang_chat_template": (str, type(None)),
    "sglang_extra_args": list,
    "notes": str,
    "card": str,
    "image_only": bool,
}


def parse_preset(name: str, entry: Any) -> ModelPreset:
    """Validate one JSON entry (types, no unknown or missing fields) and build the preset."""
    where = f"preset {name!r}"
    if not isinstance(entry, dict):
        raise PresetError(f"{where}: must be an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
    if unknown:
        raise PresetError(
            f"{where}: unknown field(s) {unknown}; allowed: {sorted({**_REQUIRED_FIELDS, **_OPTIONAL_FIELDS})}"
        )
    missing = sorted(set(_REQUIRED_FIELDS) - set(entry))
    if missing:
        raise PresetError(f"{where}: missing field(s) {missing}")
    for key, kind in {**_REQUIRED_FIELDS, **_OPTIONAL_FIELDS}.items():
        if key in entry and not isinstance(entry[key], kind):
            raise PresetError(f"{where}: field {key!r} has the wrong type ({type(entry[key]).__name__})")
    extra_args = entry.get("sglang_extra_args", [])
    if not all(isinstance(arg, str) for arg in extra_args):
        raise PresetError(f"{where}: field 'sglang_extra_args' must be a list of strings")
    return ModelPreset(
        name=name,
        checkpoint=entry["checkpoint"],
        source=entry["source"],
        template=entry["template"],
        backend=entry["backend"],
        sglang_chat_template=entry.get("sglang_chat_template"),
        sglang_extra_args=tuple(extra_args),
        notes=entry.get("notes", ""),
        card=entry.get("card", ""),
        image_only=entry.get("image_only", False),
    )


def parse_presets(document: Any) -> dict[str, ModelPreset]:
    """Validate a whole presets document (``{"format_version": 1, "presets": {name: entry}}``)."""
    if not isinstance(document, dict):
        raise PresetError("the top level must be an object with 'format_version' and 'presets'")
    version = document.get("format_version")
    if version != PRESETS_FORMAT_VERSION:
        raise PresetError(f"'format_version' must be {PRESETS_FORMAT_VERSION}, got {version!r}")
    entries = document.get("presets")
    if not isinstance(entries, dict) or not entries:
        raise PresetError("'presets' must be a non-empty object mapping names to presets")
    return {name: parse_preset(name, entry) for name, entry in entries.items()}


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> tuple[ModelPreset, ...]:
    # Keyed on the file's identity and stamp so an edited file is re-read; the tuple keeps the cache immutable.
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PresetError(f"{path}: cannot read presets file: {exc.strerror or exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PresetError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    try:
        return tuple(parse_presets(document).values())
    except PresetError as exc:
        raise PresetError(f"{path}: {exc}") from exc


def load_presets(path: str | os.PathLike[str] | None = None) -> dict[str, ModelPreset]:
    """Load and validate the registry (default: the ``presets.json`` next to this module)."""
    file = Path(path) if path is not None else DEFAULT_PRESETS_PATH
    try:
        stat = file.stat()
    except OSError as exc:
        raise PresetError(f"{file}: presets file not found ({exc.strerror or exc})") from exc
    return {
        preset.name: preset for preset in _load_cached(str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    }


def _from_preset(preset: ModelPreset, project_root: Path, template: str | None) -> ResolvedModel:
    checkpoint = preset.checkpoint
    if preset.source == "local":
        checkpoint = str((project_root / Path(preset.checkpoint).expanduser()).resolve())
    return ResolvedModel(
        name=preset.name,
        checkpoint=checkpoint,
        source=preset.source,
        backend=preset.backend,
        template=template or preset.template,
        sglang_chat_template=preset.sglang_chat_template,
        sglang_extra_args=preset.sglang_extra_args,
        notes=preset.notes,
        preset=preset,
    )


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1


def resolve_model(
    name_or_path: str,
    *,
    presets: dict[str, ModelPreset] | None = None,
    project_root: str | os.PathLike[str] | None = None,
    template: str | None = None,
) -> ResolvedModel:
    """Resolve, in order: a preset name; an existing directory (the preset whose path it is, if any); a hub
    id (the preset whose checkpoint it is, if any). An explicit ``template`` overrides the preset's.

    Unregistered checkpoints get the transformers backend and ``template=None`` unless one is given.
    """
    if not name_or_path or not name_or_path.strip():
        raise UnknownModelError("model name is empty")
    registry = load_presets() if presets is None else presets
    root = Path(project_root) if project_root is not None else PROJECT_ROOT
    if template is not None:
        get_template(template)
    if name_or_path in registry:
        return _from_preset(registry[name_or_path], root, template)

    directory = Path(name_or_path).expanduser()
    # A preset's local path resolves to the preset even before the model is built there.
    for preset in registry.values():
        if preset.source == "local" and (root / preset.checkpoint).resolve() == directory.resolve():
            return _from_preset(preset, root, template)
    if directory.is_dir():
        resolved = directory.resolve()
        return ResolvedModel(
            name=resolved.name,
            checkpoint=str(resolved),
            source="local",
            backend="transformers",
            template=template,
        )
    if _looks_like_path(name_or_path):
        raise UnknownModelError(f"{name_or_path!r} looks like a path but is not an existing directory")

    if HUB_ID_PATTERN.fullmatch(name_or_path):
        for preset in registry.values():
            if preset.source == "hub" and preset.checkpoint.lower() == name_or_path.lower():
                return _from_preset(preset, root, template)
        return ResolvedModel(
            name=name_or_path,
            checkpoint=name_or_path,
            source="hub",
            backend="transformers",
            template=template,
        )
    raise UnknownModelError(
        f"{name_or_path!r} is not a preset, an existing directory or a hub id (owner/name); "
        f"presets: {', '.join(sorted(registry))}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llava_demo.presets",
        description="List and validate the model presets, or show how a model name resolves.",
    )
    parser.add_argument("--file", default=None, help="presets file (default: llava_demo/presets.json)")
    parser.add_argument("--resolve", metavar="NAME_OR_PATH", help="print the resolved record as JSON")
    parser.add_argument("--template", default=None, help="template override for --resolve")
    args = parser.parse_args(argv)
    try:
        presets = load_presets(args.file)
        resolved = (
            resolve_model(args.resolve, presets=presets, template=args.template) if args.resolve else None
        )
    except (PresetError, UnknownModelError, UnknownTemplateError) as exc:
        parser.exit(2, f"error: {type(exc).__name__}: {exc}\n")
    if resolved is not None:
        record = asdict(resolved)
        record.pop("preset")
        print(json.dumps(record, indent=1))
        return 0
    for preset in presets.values():
        sglang = f" --chat-template {preset.sglang_chat_template}" if preset.sglang_chat_template else ""
        print(f"{preset.name:28} {preset.backend:12} {preset.template:17} {preset.checkpoint}{sglang}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
