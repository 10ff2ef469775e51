"""COCO instances/captions documents assembled from per-scene job results."""

from __future__ import annotations

from typing import Any

from trainer.synthworld.concepts import CATEGORIES, SIGN

# Test image ids start here so ids are unique across splits (train ids are 1..train_scenes).
TEST_ID_OFFSET = 1_000_000


def image_id(split: str, index: int) -> int:
    return (TEST_ID_OFFSET if split == "test" else 0) + index + 1


def file_name(split: str, index: int) -> str:
    return f"{image_id(split, index):012d}.png"


def coco_categories() -> list[dict[str, Any]]:
    return [
        {"id": i + 1, "name": name, "supercategory": "sign" if name == SIGN else "shape"}
        for i, name in enumerate(CATEGORIES)
    ]


def coco_documents(
    split: str, results: list[dict[str, Any]], seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(instances, captions) for ``split`` from scene_job results in index order."""
    category_ids = {category["name"]: category["id"] for category in coco_categories()}
    info = {"description": f"SynthWorld {split} scenes", "version": "1", "seed": seed}
    images, annotations, captions = [], [], []
    for index, result in enumerate(results):
        record = {
            "id": image_id(split, index),
            "file_name": file_name(split, index),
            "width": result["width"],
            "height": result["height"],
            "large_scene": result["large_scene"],
            "background": result["background"],
        }
        images.append(record)
        for ann in result["annotations"]:
            body = {key: value for key, value in ann.items() if key != "category"}
            category_id = category_ids[ann["category"]]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": record["id"], "category_id": category_id, **body}
            )
        for caption in result["captions"]:
            captions.append({"id": len(captions) + 1, "image_id": record["id"], "caption": caption})
    instances = {"info": info, "images": images, "annotations": annotations, "categories": coco_categories()}
    return instances, {"info": info, "images": images, "annotations": captions}
