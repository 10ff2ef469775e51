"""Tiny COCO-format samples for the data-engine tests (helpers only; imported by test_data_engine_*.py).

``write_coco_sample`` draws three small images with PIL and writes captions + instances JSON: real-COCO style
(categories only) or SynthWorld style (each annotation with an ``"attributes"`` dict).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 2, "name": "bicycle", "supercategory": "vehicle"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 6, "name": "bus", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 62, "name": "chair", "supercategory": "furniture"},
]
COCO_IMAGES = [
    {"id": 1, "file_name": "000000000001.jpg", "width": 200, "height": 150},
    {"id": 2, "file_name": "000000000002.jpg", "width": 160, "height": 160},
    {"id": 3, "file_name": "sub/000000000003.jpg", "width": 120, "height": 90},
]
# (image_id, category_id, bbox); image 1's person box is the hand-checked one: [0.400, 0.200, 0.550, 0.800].
COCO_BOXES = [
    (1, 1, [80, 30, 30, 90]),
    (1, 2, [70, 80, 50, 50]),
    (1, 6, [0, 20, 60, 80]),
    (1, 3, [140, 70, 50, 40]),
    (2, 18, [10, 100, 40, 40]),
    (2, 1, [100, 20, 40, 100]),
    (2, 1, [60, 30, 30, 90]),
    (3, 3, [10, 10, 40, 30]),
]
COCO_CAPTIONS = {
    1: ["A man rides a bicycle next to a bus.", "A cyclist passes a bus and a car on the street."],
    2: ["Two people walk a dog in the park.", "A dog and two people outdoors."],
    3: ["A vehicle parked on an empty street."],
}

SYNTH_CATEGORIES = [
    {"id": i + 1, "name": name}
    for i, name in enumerate(("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "ring"))
] + [{"id": 11, "name": "sign"}]
SYNTH_IMAGES = [
    {"id": 10, "file_name": "train/scene_0.png", "width": 192, "height": 192},
    {"id": 11, "file_name": "train/scene_1.png", "width": 128, "height": 128},
]


def _attrs(shape: str, color: str | None, pattern: str | None, size: str, text: str | None = None) -> dict:
    return {"shape": shape, "color": color, "pattern": pattern, "size": size, "text": text, "species": None}


# (image_id, category_id, bbox, attributes)
SYNTH_BOXES = [
    (10, 1, [8, 8, 56, 56], _attrs("circle", "red", "striped", "large")),
    (10, 4, [150, 10, 30, 30], _attrs("star", "blue", "plain", "small")),
    (10, 3, [80, 80, 36, 36], _attrs("triangle", "green", "checkered", "medium")),
    (10, 11, [140, 160, 40, 20], _attrs("sign", None, None, "small", text="K7")),
    (11, 2, [5, 5, 30, 30], _attrs("square", "yellow", "dotted", "medium")),
    (11, 2, [90, 90, 30, 30], _attrs("square", "purple", "plain", "medium")),
]
SYNTH_CAPTIONS = {
    10: [
        "A large red striped circle in the top left and a small blue star in the top right.",
        "A green checkered triangle in the center and a sign reading K7.",
    ],  # fmt: skip
    11: ["Two squares, one yellow and dotted, one purple."],
}


def _draw(root: Path, image: dict[str, Any], boxes: list[list[float]]) -> None:
    path = root / image["file_name"]
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = Image.new("RGB", (image["width"], image["height"]), (250, 250, 245))
    draw = ImageDraw.Draw(canvas)
    for x, y, w, h in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(20, 20, 20), width=2)
    canvas.save(path)


def write_coco_sample(root: Path, *, synthworld: bool = False) -> tuple[Path, Path, Path]:
    """Write images + ``captions.json`` + ``instances.json`` under ``root``; return (captions, instances, images)."""
    images_dir = root / "images"
    categories = SYNTH_CATEGORIES if synthworld else COCO_CATEGORIES
    images = SYNTH_IMAGES if synthworld else COCO_IMAGES
    captions = SYNTH_CAPTIONS if synthworld else COCO_CAPTIONS
    boxes = SYNTH_BOXES if synthworld else [(*row, None) for row in COCO_BOXES]
    annotations = []
    for index, (image_id, category_id, bbox, attributes) in enumerate(boxes, start=1):
        annotation = {"id": index, "image_id": image_id, "category_id": category_id, "bbox": bbox,
                      "area": bbox[2] * bbox[3], "iscrowd": 0}  # fmt: skip
        if attributes is not None:
            annotation["attributes"] = attributes
        annotations.append(annotation)
    for image in images:
        _draw(images_dir, image, [a["bbox"] for a in annotations if a["image_id"] == image["id"]])
    caption_rows = [
        {"id": 100 + i, "image_id": image_id, "caption": text}
        for i, (image_id, text) in enumerate((k, t) for k, texts in captions.items() for t in texts)
    ]
    captions_path, instances_path = root / "captions.json", root / "instances.json"
    captions_path.write_text(json.dumps({"images": images, "annotations": caption_rows}))
    instances_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return captions_path, instances_path, images_dir
