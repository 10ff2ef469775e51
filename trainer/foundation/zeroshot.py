"""Zero-shot classification of a SynthWorld world's downstream tasks with a saved open_clip model.

    python -m trainer.foundation.zeroshot --model DIR --world DIR [--json] [--out FILE] [--tasks shapes colors]

Each task (``tasks/<task>/classes.txt`` + ``test.jsonl``) is classified with ``open_clip.build_zero_shot_classifier``
(per-class mean of normalised template embeddings) and logits ``100 * image @ W``, as open_clip's ImageNet eval.
Reported per task: top-1, top-5 (when there are more than 5 classes) and chance (1 / number of classes).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from react_explorer.retrieval.prompt_templates import SYNTHWORLD_TEMPLATES
from trainer.foundation.clip_data import load_rgb
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES
from vision_common.atomic import atomic_write_json
from vision_common.open_clip_dir import load_open_clip_dir

TASKS_DIR = "tasks"
Template = Callable[[str], str]

# The explorer's "synthworld" prompt set (worded like the pool's alt-text). Shapes are also prompted as
# "<colour> <shape>" over every colour, and colours as "<colour> <shape>" over every shape, so a prompt does not
# depend on the (unknown) other attribute of the test object: the ensemble mean marginalises it.
GENERIC_TEMPLATES: tuple[Template, ...] = tuple(template.format for template in SYNTHWORLD_TEMPLATES)
SYNTHWORLD_TEMPLATES: dict[str, tuple[Template, ...]] = {
    "shapes": (*GENERIC_TEMPLATES, *((lambda c, color=color: f"{color} {c}") for color in COLOR_NAMES)),
    "colors": (lambda c: f"{c} shape", *((lambda c, shape=shape: f"{c} {shape}") for shape in SHAPES)),
    "species": GENERIC_TEMPLATES,
}


class TaskDataError(ValueError):
    """A task directory is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class ZeroShotTask:
    name: str
    classnames: tuple[str, ...]
    image_paths: tuple[Path, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class TaskResult:
    task: str
    num_classes: int
    num_images: int
    top1: float
    top5: float | None
    chance: float


def templates_for(task: str) -> tuple[Template, ...]:
    return SYNTHWORLD_TEMPLATES.get(task, GENERIC_TEMPLATES)


def read_task(task_dir: str | os.PathLike[str]) -> ZeroShotTask:
    """Read ``classes.txt`` and ``test.jsonl``; check every label index and class name against each other."""
    root = Path(task_dir)
    classes_file, test_file = root / "classes.txt", root / "test.jsonl"
    for path in (classes_file, test_file):
        if not path.is_file():
            raise TaskDataError(f"task {root.name}: {path} not found")
    classnames = tuple(
        line.strip() for line in classes_file.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    if len(classnames) < 2:
        raise TaskDataError(f"{classes_file}: need at least 2 classes, got {len(classnames)}")
    if len(set(classnames)) != len(classnames):
        raise TaskDataError(f"{classes_file}: duplicate class names")
    paths, labels = [], []
    for number, line in enumerate(test_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{test_file}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"{where}: invalid JSON: {exc}") from exc
        image, label = record.get("image"), record.get("label")
        if not isinstance(image, str) or not image:
            raise TaskDataError(f"{where}: 'image' must be a relative path string")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(classnames):
            raise TaskDataError(f"{where}: 'label' must be an int in [0, {len(classnames)}), got {label!r}")
        if "class" in record and record["class"] != classnames[label]:
            raise TaskDataError(
                f"{where}: 'class' {record['class']!r} disagrees with classes.txt[{label}] {classnames[label]!r}"
            )
        paths.append(root / image)
        labels.append(label)
    if not labels:
        raise TaskDataError(f"{test_file}: no test records")
    return ZeroShotTask(root.name, classnames, tuple(paths), tuple(labels))


def discover_tasks(world: str | os.PathLike[str]) -> list[str]:
    tasks_root = Path(world) / TASKS_DIR
    if not tasks_root.is_dir():
        raise TaskDataError(f"{tasks_root} not found: not a SynthWorld world directory")
    names = sorted(p.name for p in tasks_root.iterdir() if (p / "classes.txt").is_file())
    if not names:
        raise TaskDataError(f"{tasks_root}: no task has a classes.txt")
    return names


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest logits ([N, C] logits, [N] labels)."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logits must be [N, C] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices  # [N, k]
    return top.eq(labels[:, None]).any(dim=1).float().mean().item()


@torch.no_grad()
def encode_images(
    model: Any, preprocess: Callable, paths: Sequence[Path], task: str, batch_size: int, progress: bool
) -> torch.Tensor:
    """Normalised image features [N, D] for the given files (decoded with the model's val transform)."""
    features = []
    starts = range(0, len(paths), batch_size)
    for start in tqdm(starts, desc=f"zeroshot {task}", unit="batch", disable=not progress):
        chunk = paths[start : start + batch_size]
        batch = torch.stack([preprocess(load_rgb(p, f"task {task}")) for p in chunk])
        features.append(model.encode_image(batch, normalize=True))
    return torch.cat(features)


def evaluate_task(
    model: Any,
    preprocess: Callable,
    tokenizer: Any,
    task: ZeroShotTask,
    *,
    templates: Sequence[Template] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> TaskResult:
    import open_clip

    model.eval()
    classifier = open_clip.build_zero_shot_classifier(
        model,
        tokenizer,
        list(task.classnames),
        list(templates or templates_for(task.name)),
        num_classes_per_batch=None,
    )  # [D, C]
    image_features = encode_images(model, preprocess, task.image_paths, task.name, batch_size, progress)
    logits = 100.0 * image_features @ classifier  # [N, C]
    labels = torch.tensor(task.labels)
    num_classes = len(task.classnames)
    return TaskResult(
        task=task.name,
        num_classes=num_classes,
        num_images=len(task.labels),
        top1=topk_accuracy(logits, labels, 1),
        top5=topk_accuracy(logits, labels, 5) if num_classes > 5 else None,
        chance=1.0 / num_classes,
    )


def evaluate_world(
    model_dir: str | os.PathLike[str],
    world: str | os.PathLike[str],
    tasks: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    progress: bool = True,
) -> list[TaskResult]:

    model, preprocess, tokenizer = load_open_clip_dir(model_dir)
    names = list(tasks) if tasks else discover_tasks(world)
    return [
        evaluate_task(
            model,
            preprocess,
            tokenizer,
            read_task(Path(world) / TASKS_DIR / name),
            batch_size=batch_size,
            progress=progress,
        )
        for name in names
    ]


def results_table(results: Sequence[TaskResult]) -> str:
    """Markdown table of the results (accuracies in %)."""
    lines = ["| task | classes | images | top-1 | top-5 | chance |", "|---|---|---|---|---|---|"]
    for r in results:
        top5 = "-" if r.top5 is None else f"{100 * r.top5:.1f}"
        lines.append(
            f"| {r.task} | {r.num_classes} | {r.num_images} | {100 * r.top1:.1f} | {top5} | {100 * r.chance:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.foundation.zeroshot",
        description="Zero-shot top-1 of a saved open_clip model on a SynthWorld world's tasks.",
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="open_clip model directory (clip_train output)"
    )
    parser.add_argument("--world", type=Path, required=True, help="SynthWorld directory (reads tasks/)")
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="task names (default: every task in the world)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON results to this file")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results = evaluate_world(
        args.model, args.world, args.tasks, batch_size=args.batch_size, progress=not args.json
    )
    payload = {"model": str(args.model), "world": str(args.world), "tasks": [asdict(r) for r in results]}
    if args.out is not None:
        atomic_write_json(args.out, payload)
    print(json.dumps(payload, indent=1) if args.json else results_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
