"""REACT on SynthWorld end to end: ``python -m trainer.react synthworld [--strategy S|S1,S2|all] [--json]``.

1. Retrieve the species task's subset from the embedded pool with only its class names and the explorer's
   defaults (``synthworld`` templates, t2t, k = 50 per prompt, near-duplicate removal at 0.94), over the
   explorer's cached index of the pool (built on first use, as the explorer tab does; the time is reported).
2. Zero-shot top-1/top-5 of the base CLIP (``assets/synthworld/models/synthworld-clip``) on the held-out
   species, shapes and colours task images.
3. Per strategy: customize the CLIP on the subset with the preset (``synthworld``; ``tiny`` for tests) and
   evaluate it the same way: ``--out/<strategy>/report.json``.
4. The before/after table of the strategies run: ``--out/table.json`` and ``--out/table.md``
   (``trainer.react.strategy_table``; ``--strategy all`` is the four strategies, the docs' table).

Resumable: ``--out`` keeps each piece with the settings that made it (world, CLIP, preset, ``--max-steps``),
and a later invocation with the same settings reuses it: the subset and the base evaluation are computed once,
a strategy whose report exists is skipped, a strategy stopped mid-run (SIGTERM: exit 143) resumes from its last
checkpoint. A piece made with other settings is an error naming it (choose another ``--out`` or delete it).

Prints one JSON object (``--json``): for one strategy its report plus ``seconds`` (this invocation) and a
``breakdown``: ``before`` and ``after`` (``{task: {"top1", "top5"}}``), ``strategy``, ``subset_pairs``, ...;
for several ``{"runs": [...], "table": ..., "seconds", "breakdown"}``. ``--table`` prints ``table.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from dataclasses import dataclass
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
from react_explorer.ui.explorer_config import DEFAULT_CACHE_ROOT, DEFAULT_WORLD, ExplorerConfig
from react_explorer.ui.index_sources import (
    build_embedded_index,
    embedded_index_dir,
    embedded_index_ready,
    embedded_problem,
)
from react_explorer.ui.query_inputs import DEFAULT_TEMPLATES
from trainer.foundation.zeroshot import TaskDataError
from trainer.react.config import STRATEGIES, react_preset
from trainer.react.strategy_table import TABLE_JSON, TABLE_MD, TableError, build_table, markdown_table
from trainer.react.train import BAD_INPUT, RUN_CONFIG_NAME, customize
from trainer.react.zeroshot_eval import before_after_table, evaluate_bundle, scores_json
from trainer.runtime.checkpoint import latest_checkpoint
from trainer.runtime.loop import CHECKPOINTS_DIR, METRICS_NAME
from trainer.runtime.metrics import read_metrics
from vision_common.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from vision_common.paths import PROJECT_ROOT

TARGET_TASK = "species"
EVAL_TASKS = ("species", "shapes", "colors")
# The explorer tab's defaults (react_explorer/ui/explorer_tab.py): t2t, k 50, dedup on.
EXPLORER_RETRIEVAL = RetrievalConfig(mode="t2t", k=50, dedup=True)
DEFAULT_OUT = PROJECT_ROOT / "runs" / "react" / "synthworld"
# The pieces of --out (module docstring); each JSON piece stores the settings that made it.
SUBSET_NAME = f"{TARGET_TASK}_subset.parquet"
RETRIEVAL_NAME = "retrieval.json"
BEFORE_NAME = "before.json"
REPORT_NAME = "report.json"
# The presets this command runs on a CPU (vit-b-32 is the paper's GPU recipe, for `train`).
PIPELINE_PRESETS = ("synthworld", "tiny")
EXIT_BAD_INPUT = 2
EXIT_STOPPED_BY_SIGNAL = 143


class RunStopped(RuntimeError):
    """A customization run was stopped (SIGTERM) before it finished; its checkpoint is kept."""


def retrieve_subset(
    world: Path, clip_dir: Path, out: Path, *, progress: bool, cache_root: Path = DEFAULT_CACHE_ROOT
) -> dict[str, Any]:
    """The species subset from the explorer's cached index (built first if needed); returns timings and size."""
    cfg = ExplorerConfig(world=world, clip_dir=clip_dir, cache_root=cache_root)
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


class SettingsMismatch(ValueError):
    """A piece of ``--out`` was made with other settings than this invocation's; the message names it."""


@dataclass(frozen=True)
class PipelineSettings:
    """What the pieces of ``--out`` depend on (stored in each, compared on reuse)."""

    world: Path
    clip: Path
    preset: str = "synthworld"
    max_steps: int | None = None

    def base(self) -> dict[str, Any]:
        """What the subset and the base evaluation depend on."""
        return {"world": str(self.world.resolve()), "clip": str(self.clip.resolve())}

    def training(self) -> dict[str, Any]:
        """What a strategy's run depends on, besides its strategy."""
        return {**self.base(), "preset": self.preset, "max_steps": self.max_steps}


def reuse(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The stored piece at ``path`` when it exists (None otherwise); made with other settings: an error."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    if stored.get("settings") != settings:
        raise SettingsMismatch(
            f"{path} was made with settings {stored.get('settings')}, this run's are {settings}: choose another "
            "--out or delete it"
        )
    return stored


def run_strategy(
    settings: PipelineSettings,
    strategy: str,
    out: Path,
    subset: Path,
    before: dict[str, Any],
    *,
    progress: bool,
) -> tuple[dict[str, Any], bool]:
    """(the strategy's report, whether it was reused): customize + evaluate, or the stored report."""
    run_dir = out / strategy
    stored = reuse(run_dir / REPORT_NAME, settings.training())
    if stored is not None:
        return stored, True
    cfg = react_preset(settings.preset, strategy)
    if settings.max_steps is not None:
        cfg = cfg.with_runtime(max_steps=settings.max_steps)
    resume = latest_checkpoint(run_dir / CHECKPOINTS_DIR) is not None and _same_config(run_dir, cfg.to_dict())
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run that never checkpointed, or with other settings
    started = time.perf_counter()
    result = customize([subset], str(settings.clip), run_dir, cfg, resume=resume, progress=progress)
    if result.final_dir is None:
        raise RunStopped(f"{strategy}: stopped at step {result.run.step} ({result.run.stop_reason}); "
                         f"checkpoint {result.run.checkpoint}; run the same command again to resume")  # fmt: skip
    tasks = [settings.world / "tasks" / name for name in EVAL_TASKS]
    after = scores_json(evaluate_bundle(load_model_dir(result.final_dir), tasks))
    report = {
        "strategy": strategy,
        "preset": settings.preset,
        "before": before,
        "after": after,
        "subset_pairs": result.subset.pairs,
        "trainable_parameters": result.parameters["trainable"],
        "steps": result.run.step,
        # A run resumed at its last step trains nothing more: its loss is the last one it logged.
        "final_loss": result.run.last_loss
        if result.run.last_loss is not None
        else read_metrics(run_dir / METRICS_NAME)[-1]["loss"],
        "model": str(result.final_dir),
        "train_seconds": round(time.perf_counter() - started, 1),  # customize + evaluation after
        "resumed": resume,
        "settings": settings.training(),
    }
    atomic_write_json(run_dir / REPORT_NAME, report)
    return report, False


def _same_config(run_dir: Path, config: dict[str, Any]) -> bool:
    path = run_dir / RUN_CONFIG_NAME
    if not path.is_file():
        return False
    return json.loads(path.read_text(encoding="utf-8")).get("config") == json.loads(json.dumps(config))


def run_pipeline(
    settings: PipelineSettings,
    out: Path,
    strategies: list[str],
    *,
    progress: bool,
    threads: int = 2,
    index_cache: Path = DEFAULT_CACHE_ROOT,
) -> dict[str, Any]:
    started = time.perf_counter()
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    reused = []
    subset = out / SUBSET_NAME
    retrieval = reuse(out / RETRIEVAL_NAME, settings.base()) if subset.is_file() else None
    if retrieval is None:
        found = retrieve_subset(
            settings.world, settings.clip, subset, progress=progress, cache_root=index_cache
        )
        retrieval = {**found, "settings": settings.base()}
        atomic_write_json(out / RETRIEVAL_NAME, retrieval)
    else:
        reused.append("subset")
    base_eval = reuse(out / BEFORE_NAME, settings.base())
    if base_eval is None:
        tick = time.perf_counter()
        tasks = [settings.world / "tasks" / name for name in EVAL_TASKS]
        scores = scores_json(evaluate_bundle(load_model_dir(settings.clip), tasks))
        base_eval = {
            "scores": scores,
            "seconds": round(time.perf_counter() - tick, 1),
            "settings": settings.base(),
        }
        atomic_write_json(out / BEFORE_NAME, base_eval)
    else:
        reused.append("before")
    before = base_eval["scores"]
    runs = []
    for strategy in strategies:
        report, was_reused = run_strategy(settings, strategy, out, subset, before, progress=progress)
        runs.append(report)
        if was_reused:
            reused.append(strategy)
    table = build_table(
        before, runs, EVAL_TASKS, preset=settings.preset, subset_pairs=retrieval["subset_pairs"]
    )
    atomic_write_json(out / TABLE_JSON, table)
    atomic_write_text(out / TABLE_MD, markdown_table(table))
    breakdown = {
        **{k: v for k, v in retrieval.items() if k != "settings"},
        "eval_before_seconds": base_eval["seconds"],
        "reused": reused,
    }
    seconds = round(time.perf_counter() - started, 1)
    if len(runs) == 1:
        report = {**runs[0], "seconds": seconds, "breakdown": breakdown}
    else:
        report = {"runs": runs, "table": table, "seconds": seconds, "breakdown": breakdown}
    atomic_write_json(out / REPORT_NAME, report)
    return report


def parse_strategies(value: str) -> list[str]:
    """``all``, one strategy, or a comma-separated list (in the order given)."""
    if value == "all":
        return list(STRATEGIES)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"{value!r}: give 'all' or distinct strategies from {', '.join(STRATEGIES)}, comma-separated"
        )
    return names


def add_synthworld_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", "--strategies", dest="strategies", type=parse_strategies,
                        default=["gated-image"], metavar="S|S1,S2|all",
                        help=f"tuning strategies ({', '.join(STRATEGIES)}), comma-separated, or all")  # fmt: skip
    parser.add_argument("--preset", choices=PIPELINE_PRESETS, default="synthworld",
                        help="training preset (tiny: the tests' few updates)")  # fmt: skip
    parser.add_argument(
        "--world", type=Path, default=DEFAULT_WORLD, help="SynthWorld directory (pool + tasks)"
    )
    parser.add_argument("--clip", type=Path, default=DEFAULT_MODEL_DIR, help="the CLIP to customize")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="subset, base evaluation, one folder per strategy, table.json/.md")  # fmt: skip
    parser.add_argument("--index-cache", type=Path, default=DEFAULT_CACHE_ROOT,
                        help="where the explorer's index of the pool is built once and kept")  # fmt: skip
    parser.add_argument("--max-steps", type=int, help="override the preset's updates (smoke runs)")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 on a machine shared with other jobs)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--table", action="store_true", help="print the markdown results table")


def run_synthworld(args: argparse.Namespace) -> int:
    settings = PipelineSettings(args.world, args.clip, args.preset, args.max_steps)
    try:
        report = run_pipeline(
            settings,
            args.out,
            args.strategies,
            progress=not args.json,
            threads=args.threads,
            index_cache=args.index_cache,
        )
    except (*BAD_INPUT, ReactExplorerError, TaskDataError, SettingsMismatch, TableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return EXIT_STOPPED_BY_SIGNAL
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.table:
        print((args.out / TABLE_MD).read_text(encoding="utf-8"), end="")
    else:
        runs = report["runs"] if "runs" in report else [report]
        for run in runs:
            print(f"## {run['strategy']} ({run['subset_pairs']} pairs, {run['train_seconds']} s)")
            print(before_after_table(run["before"], run["after"]))
    return 0
