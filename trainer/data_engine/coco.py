"""Read and validate COCO captions + instances files and join them into one record per image.

Works for real COCO (``captions_train2017.json`` + ``instances_train2017.json``) and for SynthWorld's
COCO-format files, whose instance annotations additionally carry an ``"attributes"`` dict. Every problem is
reported as a :class:`CocoFormatError` naming the file and the offending field, before any output is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any


class CocoFormatError(ValueError):
    """A COCO annotation file (or the image folder it points at) is malformed; the message names the file."""


@dataclass(frozen=True)
class CocoImage:
    """One image joined across both files. ``file_name`` is relative to the image folder (POSIX form)."""

    image_id: int
    file_name: str
    path: Path
    width: int
    height: int
    captions: tuple[str, ...]
    # Raw instance annotations (validated), in file order; SynthWorld ones carry "attributes".
    annotations: tuple[dict[str, Any], ...]
    info: dict[str, Any]


@dataclass(frozen=True)
class CocoDataset:
    images: tuple[CocoImage, ...]
    categories: tuple[dict[str, Any], ...]
    images_dir: Path

    @property
    def category_names(self) -> dict[int, str]:
        return {int(c["id"]): str(c["name"]) for c in self.categories}


def read_json(path: Path, what: str) -> Any:
    """Load a JSON file, turning missing files and syntax errors into a :class:`CocoFormatError`."""
    if not path.is_file():
        raise CocoFormatError(f"{what} file {path} does not exist")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise CocoFormatError(
            f"{what} file {path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise CocoFormatError(f"{what} file {path}: not UTF-8 text ({exc.reason})") from exc


def _require_list(doc: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(doc, dict):
        raise CocoFormatError(
            f"{path}: top level must be a JSON object with '{key}', got {type(doc).__name__}"
        )
    if key not in doc:
        raise CocoFormatError(f"{path}: missing top-level key '{key}'")
    value = doc[key]
    if not isinstance(value, list):
        raise CocoFormatError(f"{path}: top-level key '{key}' must be a list, got {type(value).__name__}")
    return value


def _field(entry: Any, key: str, where: str, path: Path) -> Any:
    if not isinstance(entry, dict):
        raise CocoFormatError(f"{path}: {where} must be an object, got {type(entry).__name__}")
    if key not in entry:
        raise CocoFormatError(f"{path}: {where} is missing field '{key}'")
    return entry[key]


def _int_field(entry: Any, key: str, where: str, path: Path, *, positive: bool = False) -> int:
    value = _field(entry, key, where, path)
    # bool is an int subclass; a JSON true is never a valid id or size.
    if isinstance(value, bool) or not isinstance(value, int) or (positive and value <= 0):
        kind = "a positive integer" if positive else "an integer"
        raise CocoFormatError(f"{path}: {where} field '{key}' must be {kind}, got {value!r}")
    return value


def _safe_relative(file_name: Any, where: str, path: Path) -> str:
    if not isinstance(file_name, str) or not file_name.strip():
        raise CocoFormatError(f"{path}: {where} field 'file_name' must be a non-empty string")
    posix = PurePosixPath(file_name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        raise CocoFormatError(f"{path}: {where} field 'file_name' must be relative to the image folder")
    return posix.as_posix()


def _parse_images(doc: Any, path: Path) -> dict[int, dict[str, Any]]:
    images: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(_require_list(doc, "images", path)):
        where = f"images[{index}]"
        image_id = _int_field(entry, "id", where, path)
        where = f"images[{index}] (id={image_id})"
        if image_id in images:
            raise CocoFormatError(f"{path}: {where} duplicates an earlier image id")
        parsed = dict(entry)
        parsed["file_name"] = _safe_relative(_field(entry, "file_name", where, path), where, path)
        parsed["width"] = _int_field(entry, "width", where, path, positive=True)
        parsed["height"] = _int_field(entry, "height", where, path, positive=True)
        images[image_id] = parsed
    return images


def _parse_categories(doc: Any, path: Path) -> tuple[dict[str, Any], ...]:
    seen: set[int] = set()
    categories = []
    for index, entry in enumerate(_require_list(doc, "categories", path)):
        where = f"categories[{index}]"
        category_id = _int_field(entry, "id", where, path)
        name = _field(entry, "name", where, path)
        if not isinstance(name, str) or not name.strip():
            raise CocoFormatError(f"{path}: {where} field 'name' must be a non-empty string")
        if category_id in seen:
            raise CocoFormatError(f"{path}: {where} duplicates category id {category_id}")
        seen.add(category_id)
        categories.append(dict(entry))
    return tuple(categories)


def _check_bbox(entry: dict[str, Any], where: str, path: Path, image: dict[str, Any]) -> list[float]:
    bbox = _field(entry, "bbox", where, path)
    numbers_ok = isinstance(bbox, list) and len(bbox) == 4
    numbers_ok = numbers_ok and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
    )
    if not numbers_ok:
        raise CocoFormatError(
            f"{path}: {where} field 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
        )
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise CocoFormatError(f"{path}: {where} field 'bbox' has non-positive width/height: {bbox!r}")
    # Real COCO boxes overshoot the border by rounding now and then; one pixel of slack keeps those valid.
    slack = 1.0
    if x < -slack or y < -slack or x + w > image["width"] + slack or y + h > image["height"] + slack:
        raise CocoFormatError(
            f"{path}: {where} field 'bbox' {bbox!r} lies outside image {image['id']} "
            f"({image['width']}x{image['height']})"
        )
    return [x, y, w, h]


def _parse_instances(
    doc: Any, path: Path, images: dict[int, dict[str, Any]], category_ids: set[int]
) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    for index, entry in enumerate(_require_list(doc, "annotations", path)):
        where = f"annotations[{index}]"
        image_id = _int_field(entry, "image_id", where, path)
        if "id" in entry:
            where = f"annotations[{index}] (id={entry['id']})"
        if image_id not in images:
            raise CocoFormatError(f"{path}: {where} field 'image_id' points at unknown image {image_id}")
        category_id = _int_field(entry, "category_id", where, path)
        if category_id not in category_ids:
            raise CocoFormatError(
                f"{path}: {where} field 'category_id' points at unknown category {category_id}"
            )
        attributes = entry.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise CocoFormatError(f"{path}: {where} field 'attributes' must be an object or absent")
        parsed = dict(entry)
        parsed["bbox"] = _check_bbox(entry, where, path, images[image_id])
        by_image[image_id].append(parsed)
    return by_image


def _parse_captions(doc: Any, path: Path, images: dict[int, dict[str, Any]]) -> dict[int, list[str]]:
    by_image: dict[int, list[str]] = {image_id: [] for image_id in images}
    for index, entry in enumerate(_require_list(doc, "annotations", path)):
        where = f"annotations[{index}]"
        image_id = _int_field(entry, "image_id", where, path)
        if image_id not in images:
            raise CocoFormatError(f"{path}: {where} field 'image_id' points at unknown image {image_id}")
        caption = _field(entry, "caption", where, path)
        if not isinstance(caption, str) or not caption.strip():
            raise CocoFormatError(f"{path}: {where} field 'caption' must be a non-empty string")
        by_image[image_id].append(" ".join(caption.split()))
    return by_image


def _check_same_images(
    caption_images: dict[int, dict[str, Any]],
    instance_images: dict[int, dict[str, Any]],
    captions_path: Path,
    instances_path: Path,
) -> None:
    only_captions = sorted(set(caption_images) - set(instance_images))
    only_instances = sorted(set(instance_images) - set(caption_images))
    if only_captions or only_instances:
        raise CocoFormatError(
            f"{captions_path} and {instances_path} list different images: ids only in captions "
            f"{only_captions[:5]}, only in instances {only_instances[:5]}"
        )
    for image_id, entry in instance_images.items():
        other = caption_images[image_id]
        for key in ("file_name", "width", "height"):
            if entry[key] != other[key]:
                raise CocoFormatError(
                    f"{captions_path} and {instances_path} disagree on image {image_id} field '{key}': "
                    f"{other[key]!r} vs {entry[key]!r}"
                )


def load_coco(
    captions_path: str | Path,
    instances_path: str | Path,
    images_dir: str | Path,
    *,
    limit: int | None = None,
) -> CocoDataset:
    """Validate both files and join them per image (file order of the instances file).

    ``limit`` keeps the first N images; only the kept images must exist on disk.
    """
    captions_path, instances_path, images_dir = Path(captions_path), Path(instances_path), Path(images_dir)
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    captions_doc = read_json(captions_path, "captions")
    instances_doc = read_json(instances_path, "instances")
    instance_images = _parse_images(instances_doc, instances_path)
    caption_images = _parse_images(captions_doc, captions_path)
    _check_same_images(caption_images, instance_images, captions_path, instances_path)
    categories = _parse_categories(instances_doc, instances_path)
    annotations = _parse_instances(
        instances_doc, instances_path, instance_images, {c["id"] for c in categories}
    )
    captions = _parse_captions(captions_doc, captions_path, caption_images)
    if not images_dir.is_dir():
        raise CocoFormatError(f"image folder {images_dir} does not exist")
    selected = list(instance_images.values())[:limit]
    missing = [entry["file_name"] for entry in selected if not (images_dir / entry["file_name"]).is_file()]
    if missing:
        raise CocoFormatError(
            f"{instances_path}: {len(missing)} image file(s) missing under {images_dir}, e.g. {missing[:3]}"
        )
    joined = tuple(
        CocoImage(
            image_id=int(entry["id"]),
            file_name=entry["file_name"],
            path=images_dir / entry["file_name"],
            width=entry["width"],
            height=entry["height"],
            captions=tuple(captions[entry["id"]]),
            annotations=tuple(annotations[entry["id"]]),
            info=entry,
        )
        for entry in selected
    )
    return CocoDataset(images=joined, categories=categories, images_dir=images_dir)


def find_coco_files(annotations_dir: str | Path, split: str) -> tuple[Path, Path]:
    """``(captions_<split>.json, instances_<split>.json)`` inside a COCO-style annotations folder."""
    folder = Path(annotations_dir)
    captions, instances = folder / f"captions_{split}.json", folder / f"instances_{split}.json"
    for path in (captions, instances):
        if not path.is_file():
            raise CocoFormatError(f"expected {path.name} in {folder}, but it does not exist")
    return captions, instances
