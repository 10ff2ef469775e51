"""Per-item work run in worker processes: sample one item from its own seed, render it, write its PNG, and
return its metadata and content hash. Items never share randomness, so output is independent of how items
are spread over workers."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.synthworld.captions import scene_captions
from trainer.synthworld.concepts import SIGN
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.geometry import box_parts
from trainer.synthworld.placed import PlacedObject
from trainer.synthworld.render import encode_png, render_image, shape_mask
from trainer.synthworld.sampling import item_seed
from trainer.synthworld.scenes import sample_scene
from trainer.synthworld.tasks import TASK_CLASSES, sample_task_image
from trainer.synthworld.web_pool import PoolPlan, sample_pool_item

# A pool image whose bytes equal a held-out image is regenerated with the next attempt's seed.
MAX_POOL_ATTEMPTS = 20


@dataclass(frozen=True)
class JobContext:
    """Everything a worker needs; sent once per chunk of items."""

    root: str  # the world's (temporary) output directory
    seed: int
    config: WorldConfig
    pool_plan: PoolPlan | None = None
    forbidden_sha256: frozenset[str] = frozenset()


def _write_png(root: str, relative: str, png: bytes) -> str:
    # Plain writes are safe here: the whole world directory becomes visible in one atomic rename at the end.
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return hashlib.sha256(png).hexdigest()


def is_large_scene(seed: int, split: str, index: int, fraction: float) -> bool:
    return random.Random(item_seed(seed, f"scene-kind/{split}", index)).random() < fraction


def _coco_annotation(obj: PlacedObject) -> dict[str, Any]:
    x, y, w, h = obj.bbox
    if obj.category == SIGN:
        area = w * h
        outline = [[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]]
    else:
        area = int(np.count_nonzero(np.asarray(shape_mask(obj.category, w, h))))
        polygon = next(polygon for polygon, filled in box_parts(obj.category, w, h) if filled)
        outline = [[x + px, y + py] for px, py in polygon]
    return {
        "bbox": [x, y, w, h],
        "area": area,
        "iscrowd": 0,
        "segmentation": [[round(v, 2) for point in outline for v in point]],
        "category": obj.category,
        "attributes": obj.attributes(),
    }


def scene_job(context: JobContext, split: str, index: int, file_name: str) -> dict[str, Any]:
    large = is_large_scene(context.seed, split, index, context.config.large_scene_fraction)
    rng = random.Random(item_seed(context.seed, f"scene/{split}", index))
    spec = sample_scene(rng, context.config, large)
    sha = _write_png(context.root, f"scenes/images/{split}/{file_name}", encode_png(spec.render()))
    captions = scene_captions(
        spec.objects, spec.background, spec.width, spec.height, rng, context.config.captions_per_scene
    )
    return {
        "width": spec.width,
        "height": spec.height,
        "large_scene": large,
        "background": spec.background.kind,
        "annotations": [_coco_annotation(obj) for obj in spec.objects],
        "captions": captions,
        "sha256": sha,
    }


def task_job(context: JobContext, task: str, class_index: int, k: int) -> dict[str, Any]:
    class_name = TASK_CLASSES[task][class_index]
    rng = random.Random(item_seed(context.seed, f"task/{task}", class_index * 1_000_000 + k))
    image = sample_task_image(rng, context.config, task, class_name)
    relative = f"images/{class_index:02d}_{k:05d}.png"
    png = encode_png(render_image(image.width, image.height, image.background, image.objects))
    sha = _write_png(context.root, f"tasks/{task}/{relative}", png)
    return {"image": relative, "label": class_index, "class": class_name, "sha256": sha}


def pool_job(context: JobContext, index: int, species: str | None) -> dict[str, Any]:
    assert context.pool_plan is not None  # the pool stage always sends its plan
    key = f"{index:09d}"
    for attempt in range(MAX_POOL_ATTEMPTS):
        rng = random.Random(item_seed(context.seed, "pool", index, attempt))
        item = sample_pool_item(rng, context.config, context.pool_plan, species)
        png = encode_png(render_image(item.width, item.height, item.background, item.objects))
        sha = hashlib.sha256(png).hexdigest()
        if sha not in context.forbidden_sha256:
            break
    else:
        raise RuntimeError(f"pool item {key}: every attempt collided with a held-out image")
    _write_png(context.root, f"pool/images/{key}.png", png)
    return {
        "key": key,
        "caption": item.caption,
        "width": item.width,
        "height": item.height,
        "objects": [obj.truth() for obj in item.objects],
        "sha256": sha,
        "regenerated": attempt,
    }


def run_chunk(job: tuple[JobContext, str, list[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    """Worker entry point: run one kind of job over a chunk of argument tuples, in order."""
    context, kind, arguments = job
    function = {"scene": scene_job, "task": task_job, "pool": pool_job}[kind]
    return [function(context, *args) for args in arguments]
