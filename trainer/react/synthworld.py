"""REACT on SynthWorld end to end: ``python -m trainer.react synthworld [--strategy S|all] [--json]``.

1. Retrieve the species task's subset from the embedded pool with only its class names and the explorer's
   defaults (``synthworld`` templates, t2t, k = 50 per prompt, near-duplicate removal at 0.94), over the
   explorer's cached index of the pool (built on first use, as the explorer tab does; the time is reported).
2. Customize the embedded tiny CLIP (``assets/synthworld/models/synthworld-clip``) on it with the ``synthworld``
   preset and the chosen strategy.
3. Zero-shot top-1/top-5 on the held-out species, shapes and colours task images, before and after.

Prints one JSON object: ``before`` and ``after`` (``{task: {"top1", "top5"}}``), ``strategy``, ``subset_pairs``,
``seconds`` (and a breakdown). ``--strategy all`` runs the four strategies on the same subset and budget and
prints ``{"runs": [...]}``; ``--table`` prints the markdown table of docs/react_customization.md instead.
The run directory ``--out/<strategy>`` is replaced by each invocation (it is a derived output).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from react_explorer.cli.retrieve import check_subset_images
from react_explorer.customized.model_dir import load_model_dir
from react_explorer.embedding.encoders import load_encoder
from react_explorer.embedding.model_spec import DEFAULT_MODEL_DIR, parse_model_spec
from react_explorer.errors import ReactExplorerError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.retrieval.class_queries import RetrievalConfig, retrieve_classes, subset_table
from react_explorer.retrieval.prompt_templates import load_templates, read_class_file
from react_explorer.ui.explorer_config import DEFAULT_WORLD, ExplorerConfig
from react_explorer.ui.index_sources import (
    build_embedded_index,
    embedded_index_dir,
    embedded_index_ready,
    embedded_problem,
)
from react_explorer.ui.query_inputs import DEFAULT_TEMPLATES
from trainer.foundation.zeroshot import TaskDataError
from trainer.react.config import STRATEGIES, react_preset
from trainer.react.train import BAD_INPUT, customize
from trainer.react.zeroshot_eval import before_after_table, evaluate_bundle, scores_json
from vision_common.atomic import atomic_write_bytes, atomic_write_json
from vision_common.paths import PROJECT_ROOT

TARGET_TASK = "species"
EVAL_TASKS = ("species", "shapes", "colors")
# The explorer tab's defaults (react_explorer/ui/explorer_tab.py): t2t, k 50, dedup on.
EXPLORER_RETRIEVAL = RetrievalConfig(mode="t2t", k=50, dedup=True)
DEFAULT_OUT = PROJECT_ROOT / "runs" / "react" / "synthworld"
EXIT_BAD_INPUT = 2
EXIT_STOPPED_BY_SIGNAL = 143


class RunStopped(RuntimeError):
    """A customization run was stopped (SIGTERM) before it finished; its checkpoint is kept."""


def retrieve_subset(world: Path, clip_dir: Path, out: Path, *, progress: bool) -> dict[str, Any]:
    """The species subset from the explorer's cached index (built first if needed); returns timings and size."""
    cfg = ExplorerConfig(world=world, clip_dir=clip_dir)
    problem = embedded_problem(cfg)
    if problem:
        raise ReactExplorerError(problem)
    index_dir = embedded_index_dir(cfg)
    build_seconds = 0.0
    if not embedded_index_ready(index_dir):
        build_seconds = build_embedded_index(cfg, index_dir, progress=progress)
    start = time.perf_counter()
    index = ClipIndex.load(index_dir)
    encoder = load_encoder(parse_model_spec(index.model))
    class_names = read_class_file(world / "tasks" / TARGET_TASK / "classes.txt")
    retrieval = retrieve_classes(
        index, encoder, class_names, load_templates(DEFAULT_TEMPLATES), EXPLORER_RETRIEVAL
    )
    table, dropped = check_subset_images(subset_table(index, retrieval), skip_missing=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return {
        "index": str(index_dir),
        "index_build_seconds": round(build_seconds, 1),
        "retrieve_seconds": round(time.perf_counter() - start, 1),
        "subset_pairs": table.num_rows,
        "dropped_missing_images": dropped,
        "classes": len(class_names),
    }


def run_pipeline(
    world: Path,
    clip_dir: Path,
    out: Path,
    strategies: list[str],
    *,
    max_steps: int | None,
    progress: bool,
    threads: int = 2,
) -> dict[str, Any]:
    started = time.perf_counter()
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    subset = out / f"{TARGET_TASK}_subset.parquet"
    retrieval = retrieve_subset(world, clip_dir, subset, progress=progress)
    tasks = [world / "tasks" / name for name in EVAL_TASKS]
    tick = time.perf_counter()
    before = scores_json(evaluate_bundle(load_model_dir(clip_dir), tasks))
    eval_seconds = time.perf_counter() - tick
    runs = []
    for strategy in strategies:
        run_started = time.perf_counter()
        cfg = react_preset("synthworld", strategy)
        if max_steps is not None:
            cfg = cfg.with_runtime(max_steps=max_steps)
        run_dir = out / strategy
        shutil.rmtree(run_dir, ignore_errors=True)
        result = customize([subset], str(clip_dir), run_dir, cfg, progress=progress)
        train_seconds = time.perf_counter() - run_started
        if result.final_dir is None:
            raise RunStopped(f"{strategy}: stopped at step {result.run.step} ({result.run.stop_reason}); "
                             f"checkpoint {result.run.checkpoint}")  # fmt: skip
        after = scores_json(evaluate_bundle(load_model_dir(result.final_dir), tasks))
        runs.append({
            "strategy": strategy,
            "before": before,
            "after": after,
            "subset_pairs": retrieval["subset_pairs"],
            "trainable_parameters": result.parameters["trainable"],
            "steps": result.run.step,
            "final_loss": result.run.last_loss,
            "model": str(result.final_dir),
            "train_seconds": round(train_seconds, 1),
        })  # fmt: skip
    seconds = time.perf_counter() - started
    breakdown = {**retrieval, "eval_before_seconds": round(eval_seconds, 1)}
    for run in runs:
        run["seconds"] = round(seconds, 1) if len(runs) == 1 else run["train_seconds"]
        run["breakdown"] = breakdown
    report = (
        runs[0] if len(runs) == 1 else {"runs": runs, "seconds": round(seconds, 1), "breakdown": breakdown}
    )
    atomic_write_json(out / "report.json", report)
    return report


def results_table(report: dict[str, Any]) -> str:
    """Markdown: one row per strategy with top-1 on each task before -> after."""
    runs = report["runs"] if "runs" in report else [report]
    before = runs[0]["before"]
    header = (
        "| strategy | trainable params | " + " | ".join(f"{t} top-1" for t in EVAL_TASKS) + " | train s |"
    )
    lines = [header, "|---|---|" + "---|" * len(EVAL_TASKS) + "---|"]
    lines.append(
        "| base (before) | - | " + " | ".join(f"{100 * before[t]['top1']:.1f}" for t in EVAL_TASKS) + " | - |"
    )
    for run in runs:
        cells = []
        for task in EVAL_TASKS:
            change = 100 * (run["after"][task]["top1"] - before[task]["top1"])
            cells.append(f"{100 * run['after'][task]['top1']:.1f} ({change:+.1f})")
        lines.append(f"| {run['strategy']} | {run['trainable_parameters']:,} | " + " | ".join(cells)
                     + f" | {run['train_seconds']} |")  # fmt: skip
    return "\n".join(lines)


def add_synthworld_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", default="gated-image", choices=(*STRATEGIES, "all"))
    parser.add_argument(
        "--world", type=Path, default=DEFAULT_WORLD, help="SynthWorld directory (pool + tasks)"
    )
    parser.add_argument("--clip", type=Path, default=DEFAULT_MODEL_DIR, help="the CLIP to customize")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="subset, runs and report.json go here")
    parser.add_argument("--max-steps", type=int, help="override the preset's updates (smoke runs)")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 on a machine shared with other jobs)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--table", action="store_true", help="print the markdown results table")


def run_synthworld(args: argparse.Namespace) -> int:
    strategies = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    try:
        report = run_pipeline(
            args.world,
            args.clip,
            args.out,
            strategies,
            max_steps=args.max_steps,
            progress=not args.json,
            threads=args.threads,
        )
    except (*BAD_INPUT, ReactExplorerError, TaskDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return EXIT_STOPPED_BY_SIGNAL
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.table:
        print(results_table(report))
    else:
        runs = report["runs"] if "runs" in report else [report]
        for run in runs:
            print(f"## {run['strategy']} ({run['subset_pairs']} pairs, {run['seconds']} s)")
            print(before_after_table(run["before"], run["after"]))
    return 0
