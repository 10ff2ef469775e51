"""Generate a whole SynthWorld into one directory, atomically (see docs/synthworld.md for the layout)."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from trainer.synthworld.coco_files import coco_documents, file_name
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES, SPECIES
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.evalsets import build_eval_sets, scene_statistics
from trainer.synthworld.jobs import JobContext, run_chunk
from trainer.synthworld.sampling import item_seed, zipf_quota
from trainer.synthworld.tasks import TASK_CLASSES
from trainer.synthworld.web_pool import PoolPlan, mismatch_plan
from vision_common.atomic import atomic_directory

CHUNK = 64
# The generator's output format, recorded in the manifest. Bump it whenever the same seed and preset would
# give a different world, so cached worlds from older code are regenerated (2: signs say words, issue #18).
WORLD_FORMAT = "synthworld/2"
POOL_SCHEMA = pa.schema(
    [("key", pa.string()), ("image_path", pa.string()), ("caption", pa.string()), ("url", pa.string()),
     ("width", pa.int32()), ("height", pa.int32())]
)  # fmt: skip
POOL_TRUTH_SCHEMA = pa.schema([("key", pa.string()), ("objects", pa.string()), ("mismatched", pa.bool_())])


def _run(
    pool: Any, context: JobContext, kind: str, arguments: list[tuple[Any, ...]], desc: str
) -> list[dict[str, Any]]:
    chunks = [(context, kind, arguments[i : i + CHUNK]) for i in range(0, len(arguments), CHUNK)]
    results: list[dict[str, Any]] = []
    mapped: Iterator[list[dict[str, Any]]] = pool.imap(run_chunk, chunks) if pool else map(run_chunk, chunks)
    with tqdm(total=len(arguments), desc=desc, unit="img", leave=False) as bar:
        for chunk in mapped:  # imap keeps input order, so results never depend on worker timing
            results += chunk
            bar.update(len(chunk))
    return results


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _parquet_bytes(rows: dict[str, list[Any]], schema: pa.Schema) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(rows, schema=schema), buffer, compression="zstd")
    return buffer.getvalue()


def species_plan(config: WorldConfig, seed: int) -> tuple[list[str], list[str | None]]:
    """(species by frequency rank, main species of each pool item or None), fixed by the seed."""
    rng = random.Random(item_seed(seed, "species-plan", 0))
    order = [species.name for species in SPECIES]
    rng.shuffle(order)
    total = round(config.pool_size * config.pool_species_fraction)
    quota = zipf_quota(total, len(order), config.species_zipf_exponent)
    assigned: list[str | None] = [None] * config.pool_size
    slots = rng.sample(range(config.pool_size), total)
    names = [name for name, count in zip(order, quota) for _ in range(count)]
    for slot, name in zip(slots, names):
        assigned[slot] = name
    return order, assigned


def _pool_plan(config: WorldConfig, seed: int) -> PoolPlan:
    rng = random.Random(item_seed(seed, "concept-order", 0))
    shapes, colors = list(SHAPES), list(COLOR_NAMES)
    rng.shuffle(shapes)
    rng.shuffle(colors)
    return PoolPlan(
        tuple(shapes), tuple(colors), config.concept_zipf_exponent, config.pool_species_named_rate
    )


def _write(root: Path, relative: str, data: bytes, digests: dict[str, str]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digests[relative] = hashlib.sha256(data).hexdigest()


def _images_digest(shas: list[tuple[str, str]]) -> str:
    return hashlib.sha256("".join(f"{path} {sha}\n" for path, sha in sorted(shas)).encode()).hexdigest()


def _generate_into(root: Path, config: WorldConfig, seed: int, pool: Any) -> dict[str, Any]:
    digests: dict[str, str] = {}
    image_shas: list[tuple[str, str]] = []
    context = JobContext(str(root), seed, config)
    counts: dict[str, Any] = {}
    coco: dict[str, dict[str, Any]] = {}
    held_out: set[str] = set()
    for split, n in (("train", config.train_scenes), ("test", config.test_scenes)):
        args = [(split, i, file_name(split, i)) for i in range(n)]
        results = _run(pool, context, "scene", args, f"{split} scenes")
        instances, captions = coco_documents(split, results, seed)
        _write(root, f"scenes/annotations/instances_{split}.json", _json_bytes(instances), digests)
        _write(root, f"scenes/annotations/captions_{split}.json", _json_bytes(captions), digests)
        image_shas += [(f"scenes/images/{split}/{a[2]}", r["sha256"]) for a, r in zip(args, results)]
        if split == "test":
            held_out.update(r["sha256"] for r in results)
        coco[split] = instances
        counts[f"{split}_scenes"] = n
        counts[f"{split}_large_scenes"] = sum(r["large_scene"] for r in results)
        counts[f"{split}_objects"] = len(instances["annotations"])
    for task, classes in TASK_CLASSES.items():
        args = [(task, c, k) for c in range(len(classes)) for k in range(config.task_images_per_class)]
        results = _run(pool, context, "task", args, f"task {task}")
        _write(root, f"tasks/{task}/classes.txt", "".join(f"{name}\n" for name in classes).encode(), digests)
        records = [{key: r[key] for key in ("image", "label", "class")} for r in results]
        _write(root, f"tasks/{task}/test.jsonl", _jsonl_bytes(records), digests)
        image_shas += [(f"tasks/{task}/{r['image']}", r["sha256"]) for r in results]
        held_out.update(r["sha256"] for r in results)
        counts[f"task_{task}_images"] = len(results)

    species_order, species_of_item = species_plan(config, seed)
    pool_context = JobContext(str(root), seed, config, _pool_plan(config, seed), frozenset(held_out))
    results = _run(pool, pool_context, "pool", list(enumerate(species_of_item)), "web pool")
    overlap = held_out & {r["sha256"] for r in results}
    if overlap:  # cannot happen after regeneration; a hard guard because leaking test images would be silent
        raise RuntimeError(f"{len(overlap)} pool images equal held-out images")
    swaps = mismatch_plan(
        len(results), config.pool_mismatch_rate, random.Random(item_seed(seed, "mismatch", 0))
    )
    captions = [results[swaps.get(i, i)]["caption"] for i in range(len(results))]
    keys = [r["key"] for r in results]
    pool_rows = {
        "key": keys,
        "image_path": [f"images/{key}.png" for key in keys],
        "caption": captions,
        "url": [f"synthworld://pool/{key}.png" for key in keys],
        "width": [r["width"] for r in results],
        "height": [r["height"] for r in results],
    }
    _write(root, "pool/pool.parquet", _parquet_bytes(pool_rows, POOL_SCHEMA), digests)
    truth_rows = {
        "key": keys,
        "objects": [json.dumps(r["objects"], separators=(",", ":")) for r in results],
        "mismatched": [i in swaps for i in range(len(results))],
    }
    _write(root, "pool/pool_truth.parquet", _parquet_bytes(truth_rows, POOL_TRUTH_SCHEMA), digests)
    image_shas += [(f"pool/images/{r['key']}.png", r["sha256"]) for r in results]
    counts["pool_pairs"] = len(results)
    counts["pool_mismatched"] = len(swaps)

    popularity, cooccurrence = scene_statistics(coco["train"])
    eval_sets = build_eval_sets(coco["test"], "scenes/images/test", popularity, cooccurrence, config, seed)
    for name, records in eval_sets.items():
        _write(root, f"eval/{name}.jsonl", _jsonl_bytes(records), digests)
        counts[f"eval_{name}"] = len(records)

    return {
        "format": WORLD_FORMAT,
        "seed": seed,
        "preset": config.name,
        "config": config.to_json(),
        "counts": counts,
        "species_by_pool_frequency": species_order,
        "disjointness": {
            "method": "sha256 of PNG bytes, checked at generation time",
            "held_out_images": len(held_out),
            "pool_images_checked": len(results),
            "pool_images_regenerated": sum(r["regenerated"] > 0 for r in results),
            "overlap_after_regeneration": len(overlap),
        },
        "sha256": dict(sorted(digests.items())),
        "images_sha256": _images_digest(image_shas),
    }


def generate_world(out: str | Path, config: WorldConfig, seed: int = 0, workers: int = 1) -> dict[str, Any]:
    """Write the world to ``out`` (replacing it only once everything is written) and return its manifest.

    ``workers`` > 1 renders in that many processes; the output bytes are the same for any worker count."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    with atomic_directory(out) as root:
        if workers == 1:
            manifest = _generate_into(root, config, seed, None)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                manifest = _generate_into(root, config, seed, pool)
        (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        root.chmod(0o755)  # the temporary directory is created private (0700); a dataset is meant to be read
    return manifest
