"""Reading the SynthWorld eval sets (``eval/{vqa,pope,mc,detail}.jsonl``) into validated ``EvalItem`` values.

The test split is read from the world's files. The train split has no files (eval sets are built from the
test scenes only), so it is built in memory by the same generator code from the train annotations: scoring
it next to the test split shows how much of a score is memorisation.

``select_items`` picks a deterministic, category-balanced subset for ``--limit`` runs, spread over the whole
set rather than its first few images, so per-category breakdowns stay populated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from PIL import Image

from trainer.llava.eval.answers import option_letters
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.evalsets import build_eval_sets, scene_statistics

EvalSetName = Literal["vqa", "pope", "mc", "detail"]
EVAL_SET_NAMES: tuple[EvalSetName, ...] = ("vqa", "pope", "mc", "detail")
Split = Literal["test", "train"]
SPLITS: tuple[Split, ...] = ("test", "train")

T = TypeVar("T")


class EvalDataError(ValueError):
    """An eval set or one of its records is unusable; the message names the file, record and field."""


@dataclass(frozen=True)
class EvalItem:
    """One question. ``image`` is relative to the world root; ``text`` is the full prompt (question plus the
    format instruction); ``answer`` is the reference (an option letter for ``mc``, "yes"/"no" for ``pope``)."""

    set_name: EvalSetName
    question_id: int
    image: str
    text: str
    answer: str
    category: str
    options: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.set_name} question {self.question_id}"


def _field(record: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in record:
        raise EvalDataError(f"{where}: missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EvalDataError(f"{where}: field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def parse_record(set_name: EvalSetName, record: Any, where: str) -> EvalItem:
    """Validate one JSONL record of ``set_name``; ``where`` (e.g. "eval/mc.jsonl line 3") prefixes errors."""
    if not isinstance(record, dict):
        raise EvalDataError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    item = EvalItem(
        set_name=set_name,
        question_id=_field(record, "question_id", int, where),
        image=_field(record, "image", str, where),
        text=_field(record, "text", str, where),
        answer=_field(record, "answer", str, where),
        category=_field(record, "category", str, where),
    )
    if not item.text.strip():
        raise EvalDataError(f"{where}: field 'text' is empty")
    if set_name == "pope" and item.answer not in ("yes", "no"):
        raise EvalDataError(f"{where}: field 'answer' must be 'yes' or 'no' in pope, got {item.answer!r}")
    if set_name == "mc":
        options = _field(record, "options", list, where)
        if not 2 <= len(options) <= 26 or not all(isinstance(option, str) for option in options):
            raise EvalDataError(f"{where}: field 'options' must list 2..26 strings, got {options!r}")
        if item.answer not in option_letters(len(options)):
            raise EvalDataError(
                f"{where}: field 'answer' must be one of the option letters "
                f"{option_letters(len(options))!r}, got {item.answer!r}"
            )
        item = replace(item, options=tuple(options))
    return item


def parse_jsonl(set_name: EvalSetName, text: str, source: str) -> list[EvalItem]:
    items = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source} line {line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
        items.append(parse_record(set_name, record, where))
    return items


def _check_world(world: Path) -> None:
    if not (world / "manifest.json").is_file():
        raise EvalDataError(
            f"{world} is not a SynthWorld world (no manifest.json); generate one with "
            f"`python -m trainer.synthworld generate --out {world}`"
        )


def _read_test_sets(world: Path, names: Sequence[EvalSetName]) -> dict[EvalSetName, list[EvalItem]]:
    sets = {}
    for name in names:
        path = world / "eval" / f"{name}.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise EvalDataError(f"{path}: cannot read eval set ({exc.strerror or exc})") from exc
        sets[name] = parse_jsonl(name, text, str(path))
    return sets


def _build_train_sets(world: Path, names: Sequence[EvalSetName]) -> dict[EvalSetName, list[EvalItem]]:
    manifest = json.loads((world / "manifest.json").read_text(encoding="utf-8"))
    known = {f.name for f in fields(WorldConfig)}
    values = {
        key: tuple(v) if isinstance(v, list) else v for key, v in manifest["config"].items() if key in known
    }
    annotations = world / "scenes" / "annotations" / "instances_train.json"
    try:
        coco = json.loads(annotations.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalDataError(f"{annotations}: cannot read the train annotations ({exc})") from exc
    popularity, cooccurrence = scene_statistics(coco)
    records = build_eval_sets(
        coco, "scenes/images/train", popularity, cooccurrence, WorldConfig(**values), int(manifest["seed"])
    )
    return {
        name: [
            parse_record(name, record, f"train {name} record {i}") for i, record in enumerate(records[name])
        ]
        for name in names
    }


def load_eval_sets(
    world: str | Path, split: Split = "test", names: Sequence[EvalSetName] = EVAL_SET_NAMES
) -> dict[EvalSetName, list[EvalItem]]:
    """All requested eval sets of a world, validated; ``split="train"`` builds them from the train scenes."""
    root = Path(world)
    unknown = [name for name in names if name not in EVAL_SET_NAMES]
    if unknown:
        raise EvalDataError(f"unknown eval set(s) {unknown}; known: {list(EVAL_SET_NAMES)}")
    if split not in SPLITS:
        raise EvalDataError(f"split must be one of {SPLITS}, got {split!r}")
    _check_world(root)
    return _read_test_sets(root, names) if split == "test" else _build_train_sets(root, names)


def stratum(item: EvalItem) -> Hashable:
    """The balancing key of ``select_items``: the category, plus the answer for yes/no probes (keeps the
    yes/no balance that POPE's precision, recall and yes-ratio assume)."""
    return (item.category, item.answer) if item.set_name == "pope" else (item.category,)


def evenly_spaced(items: Sequence[T], count: int) -> list[T]:
    """``count`` items spread evenly over ``items`` in order (all of them when ``count >= len(items)``)."""
    if count >= len(items):
        return list(items)
    return [items[(index * len(items)) // count] for index in range(count)]


def select_items(
    items: Sequence[EvalItem], limit: int | None, key: Callable[[EvalItem], Hashable] = stratum
) -> list[EvalItem]:
    """At most ``limit`` items: quotas shared as equally as possible over the strata (a stratum with fewer
    items gives its spare quota to the others), items evenly spaced within each stratum, original order
    kept. ``None`` or a limit >= len(items) returns every item."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit}")
    groups: dict[Hashable, list[EvalItem]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    quotas = dict.fromkeys(groups, 0)
    remaining = limit
    while remaining:
        open_groups = [k for k in sorted(groups, key=repr) if quotas[k] < len(groups[k])]
        for k in open_groups[:remaining]:
            quotas[k] += 1
        remaining -= min(remaining, len(open_groups))
    chosen = {
        id(item) for k, group in groups.items() for item in evenly_spaced(group, quotas[k]) if quotas[k]
    }
    return [item for item in items if id(item) in chosen]


def distinct_images(items: Sequence[EvalItem], count: int) -> list[str]:
    """``count`` distinct image paths, evenly spaced over the order in which ``items`` first use them."""
    return evenly_spaced(list(dict.fromkeys(item.image for item in items)), count)


def open_eval_image(world: str | Path, item_image: str, where: str) -> Image.Image:
    """Open an eval image as RGB; a missing or broken file is an ``EvalDataError`` naming the question."""
    path = Path(world) / item_image
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise EvalDataError(f"{where}: image {path} does not exist") from exc
    except OSError as exc:
        raise EvalDataError(f"{where}: image {path} cannot be read ({exc})") from exc
