"""Zero-shot classification before/after customization: ``python -m trainer.react eval --model M --task T``.

A task is a SynthWorld task folder (``classes.txt`` + ``test.jsonl``) or an ImageFolder (one sub-folder of
images per class, the folder name is the class name; an optional ``classes.txt`` gives readable names in
folder order). The classifier is open_clip's ``build_zero_shot_classifier`` over class names x templates:
the explorer's template sets (``openai``, ``simple``, ``synthworld``, a file) or ``auto`` (a SynthWorld task's
own ensemble from ``trainer.foundation.zeroshot``, ``openai`` for an ImageFolder). Top-1 and top-5 per task,
as a JSON report (``--out``) and a table. ``--classes a,b,c`` scores only those classes of each task (the class
names a REACT subset was retrieved for): the classifier holds just them and only their images are scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from react_explorer.customized.gated_blocks import ReactModelError
from react_explorer.customized.model_dir import ClipBundle, load_base
from react_explorer.embedding.pool_readers import IMAGE_SUFFIXES
from react_explorer.errors import QueryError
from react_explorer.retrieval.prompt_templates import load_templates
from trainer.foundation.zeroshot import TaskDataError, ZeroShotTask, evaluate_task, read_task, templates_for
from vision_common.atomic import atomic_write_json

AUTO_TEMPLATES = "auto"
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class TaskScore:
    task: str
    top1: float
    top5: float | None
    num_classes: int
    num_images: int
    templates: str


def read_any_task(path: str | os.PathLike[str]) -> tuple[ZeroShotTask, bool]:
    """(task, is_synthworld): a SynthWorld task folder or an ImageFolder."""
    root = Path(path)
    if (root / "test.jsonl").is_file():
        return read_task(root), True
    if not root.is_dir():
        raise TaskDataError(f"task {root} not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if len(folders) < 2:
        raise TaskDataError(
            f"task {root}: an ImageFolder needs at least 2 class folders, found {len(folders)}"
        )
    names = [p.name for p in folders]
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        names = [
            line.strip() for line in classes_file.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        if len(names) != len(folders):
            raise TaskDataError(
                f"{classes_file} names {len(names)} classes but {root} has {len(folders)} folders"
            )
    paths, labels = [], []
    for label, folder in enumerate(folders):
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise TaskDataError(f"task {root}: class folder {folder.name} holds no images")
        paths += images
        labels += [label] * len(images)
    return ZeroShotTask(root.name, tuple(names), tuple(paths), tuple(labels)), False


def parse_class_list(text: str | None) -> tuple[str, ...]:
    """``"a, b,c"`` -> ("a", "b", "c"): comma-separated, trimmed, first of duplicates kept; empty -> ()."""
    names = (name.strip() for name in (text or "").split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def restrict_task(task: ZeroShotTask, class_names: Sequence[str]) -> ZeroShotTask:
    """Only the images of ``class_names``, relabelled 0..n-1 in that order: zero-shot among the classes a
    customization targeted. A name the task does not have is an error naming it (a typo would else silently
    score fewer classes)."""
    wanted = list(dict.fromkeys(class_names))
    missing = [name for name in wanted if name not in task.classnames]
    if missing:
        raise TaskDataError(
            f"task {task.name} has no class {missing[0]!r} (its classes: {', '.join(task.classnames)})"
        )
    if len(wanted) < 2:
        raise TaskDataError(f"task {task.name}: zero-shot needs at least 2 classes, got {wanted}")
    new_label = {task.classnames.index(name): label for label, name in enumerate(wanted)}
    kept = [(path, new_label[old]) for path, old in zip(task.image_paths, task.labels) if old in new_label]
    if not kept:
        raise TaskDataError(f"task {task.name} has no test image of the classes {wanted}")
    return ZeroShotTask(
        task.name, tuple(wanted), tuple(p for p, _ in kept), tuple(label for _, label in kept)
    )


def task_templates(
    spec: str, task: ZeroShotTask, synthworld: bool
) -> tuple[Sequence[Callable[[str], str]], str]:
    """Template callables and their name: the explorer's sets / a file, or ``auto``."""
    if spec == AUTO_TEMPLATES:
        if synthworld:
            return templates_for(task.name), f"synthworld task ensemble ({task.name})"
        spec = "openai"
    return tuple((lambda c, t=t: t.format(c)) for t in load_templates(spec)), spec


def evaluate_bundle(
    bundle: ClipBundle, tasks: Sequence[str | os.PathLike[str]], *, templates: str = AUTO_TEMPLATES,
    batch_size: int = 256, progress: bool = False, classes: Sequence[str] = (),
) -> dict[str, TaskScore]:  # fmt: skip
    """Zero-shot top-1/top-5 of a loaded model on each task (keyed by the task folder's name); with
    ``classes``, on those classes of each task only (``restrict_task``)."""
    scores = {}
    for path in tasks:
        task, synthworld = read_any_task(path)
        if classes:
            task = restrict_task(task, classes)
        chosen, name = task_templates(templates, task, synthworld)
        result = evaluate_task(
            bundle.model, bundle.preprocess, bundle.tokenizer, task, templates=chosen, batch_size=batch_size,
            progress=progress,
        )  # fmt: skip
        scores[task.name] = TaskScore(
            task.name, result.top1, result.top5, result.num_classes, result.num_images, name
        )
    return scores


def evaluate_model(
    model: str, tasks: Sequence[str | os.PathLike[str]], *, checkpoint: str | None = None, **kwargs: Any
) -> dict[str, TaskScore]:
    """The function the launcher calls: a model directory (or name + checkpoint) on the given tasks."""
    return evaluate_bundle(load_base(model, checkpoint), tasks, **kwargs)


def check_tasks(tasks: Sequence[str | os.PathLike[str]], classes: Sequence[str] = ()) -> None:
    """Read every task (and restrict it) without a model: bad input is found before a training run, not after."""
    for path in tasks:
        task, _ = read_any_task(path)
        if classes:
            restrict_task(task, classes)


def before_after_report(
    model: str, baseline: str, tasks: Sequence[str | os.PathLike[str]], *, checkpoint: str | None = None,
    baseline_checkpoint: str | None = None, classes: Sequence[str] = (), **kwargs: Any,
) -> dict[str, Any]:  # fmt: skip
    """The JSON report of a before/after evaluation: ``{"model", "baseline", "before", "after"}`` (and
    ``classes`` when restricted); the launcher shows it as the before/after table."""
    after = scores_json(evaluate_model(model, tasks, checkpoint=checkpoint, classes=classes, **kwargs))
    before = scores_json(
        evaluate_model(baseline, tasks, checkpoint=baseline_checkpoint, classes=classes, **kwargs)
    )
    report: dict[str, Any] = {"model": model, "baseline": baseline, "before": before, "after": after}
    if classes:
        report["classes"] = list(classes)
    return report


def scores_json(scores: dict[str, TaskScore]) -> dict[str, dict[str, Any]]:
    """``{task: {"top1": x, "top5": y, ...}}`` (fractions in [0, 1])."""
    return {name: {k: v for k, v in asdict(score).items() if k != "task"} for name, score in scores.items()}


def before_after_table(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> str:
    """Markdown rows: task, top-1 before / after / change (points), top-5 before / after."""
    lines = [
        "| task | top-1 before | top-1 after | change | top-5 before | top-5 after |",
        "|---|---|---|---|---|---|",
    ]
    for task in before:
        b, a = before[task], after[task]
        top5 = [("-" if x.get("top5") is None else f"{100 * x['top5']:.1f}") for x in (b, a)]
        change = 100 * (a["top1"] - b["top1"])
        lines.append(
            f"| {task} | {100 * b['top1']:.1f} | {100 * a['top1']:.1f} | {change:+.1f} | {top5[0]} | {top5[1]} |"
        )
    return "\n".join(lines)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model directory, or an open_clip name with --checkpoint"
    )
    parser.add_argument("--checkpoint", help="weights file for an open_clip model name")
    parser.add_argument("--task", action="append", required=True, type=Path,
                        help="SynthWorld task folder or ImageFolder (repeat for several)")  # fmt: skip
    parser.add_argument("--templates", default=AUTO_TEMPLATES,
                        help="auto, openai, simple, synthworld, or a template file")  # fmt: skip
    parser.add_argument("--baseline", help="also evaluate this model and print a before/after table")
    parser.add_argument(
        "--classes", default="", help="comma-separated class names: score only these classes of each task"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_eval(args: argparse.Namespace) -> int:
    classes = parse_class_list(args.classes)
    kwargs = {"templates": args.templates, "batch_size": args.batch_size, "progress": not args.json,
              "classes": classes}  # fmt: skip
    try:
        if args.baseline:
            report = before_after_report(
                args.model, args.baseline, args.task, checkpoint=args.checkpoint, **kwargs
            )
        else:
            after = scores_json(evaluate_model(args.model, args.task, checkpoint=args.checkpoint, **kwargs))
            report = {"model": args.model, "tasks": after, **({"classes": list(classes)} if classes else {})}
    except (TaskDataError, ReactModelError, QueryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.out is not None:
        atomic_write_json(args.out, report)
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.baseline:
        print(before_after_table(report["before"], report["after"]))
    else:
        for name, score in report["tasks"].items():
            top5 = "-" if score["top5"] is None else f"{100 * score['top5']:.1f}"
            print(f"{name}: top-1 {100 * score['top1']:.1f}, top-5 {top5} ({score['num_images']} images)")
    return 0
