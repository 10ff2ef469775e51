"""A read-only view of one annotated image, built from COCO instances (SynthWorld's or real COCO's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_ATTRIBUTE_KEYS = ("color", "pattern", "size", "text", "species")


@dataclass(frozen=True)
class SceneObject:
    """One annotated object. Attributes are None when the source does not know them (real COCO)."""

    category: str  # "star", "sign", ... or any COCO category name
    bbox: tuple[float, float, float, float]  # COCO x, y, w, h in pixels
    color: str | None = None
    pattern: str | None = None
    size: str | None = None
    text: str | None = None
    species: str | None = None
    crowd: bool = False  # COCO iscrowd: one box over many instances, so the category cannot be counted

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.bbox
        return x + w / 2.0, y + h / 2.0


@dataclass(frozen=True)
class SceneView:
    width: int
    height: int
    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"scene size must be positive, got {self.width}x{self.height}")


def _image_label(image: dict[str, Any]) -> str:
    return repr(image.get("file_name", image.get("id", "<no id>")))


def scene_from_coco(
    image: dict[str, Any], annotations: list[dict[str, Any]], categories: dict[int, str]
) -> SceneView:
    """Build the view of ``image`` from COCO ``annotations`` (the whole list may be passed: only those whose
    ``image_id`` equals ``image["id"]`` are used). Each annotation's optional ``"attributes"`` dict supplies
    colour/pattern/size/text/species; real COCO has none, so those stay None."""
    try:
        width, height = int(image["width"]), int(image["height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"COCO image {_image_label(image)}: needs integer 'width' and 'height'") from exc
    image_id = image.get("id")
    objects = []
    for ann in annotations:
        if "image_id" in ann and image_id is not None and ann["image_id"] != image_id:
            continue
        label = f"annotation {ann.get('id', '<no id>')} of image {_image_label(image)}"
        category_id = ann.get("category_id")
        if category_id not in categories:
            raise ValueError(f"{label}: unknown category_id {category_id!r}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"{label}: 'bbox' must be [x, y, w, h], got {bbox!r}")
        attributes = ann.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise ValueError(f"{label}: 'attributes' must be an object, got {type(attributes).__name__}")
        values = {key: attributes.get(key) for key in _ATTRIBUTE_KEYS}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{label}: attribute {key!r} must be a string or null, got {value!r}")
        objects.append(
            SceneObject(
                category=categories[category_id],
                bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
                crowd=bool(ann.get("iscrowd", 0)),
                **values,
            )
        )
    return SceneView(width=width, height=height, objects=tuple(objects))


def views_from_coco(coco: dict[str, Any]) -> list[tuple[dict[str, Any], SceneView]]:
    """(image record, view) for every image of a COCO instances object, in file order."""
    names = {category["id"]: category["name"] for category in coco["categories"]}
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    return [(image, scene_from_coco(image, by_image.get(image["id"], []), names)) for image in coco["images"]]
