"""Evaluate a chat model on the SynthWorld held-out sets.

    python -m trainer.eval llava --json                      # embedded model, default world, quick limits
    python -m trainer.eval llava --model DIR --world DIR --limit 100 --out report.json --predictions p.jsonl
    python -m trainer.eval llava --ablation-model runs/llava-noanyres   # + the base-tile model's small details

Prints a JSON object (``--json``) or a short table with ``short_answer_accuracy``, ``yes_no_f1``,
``multiple_choice_accuracy``, ``small_detail_accuracy`` (each with a 95% interval), per-category breakdowns,
answer lengths, counts, ``image_use`` (answer-loss gaps with a wrong image), the ablation model's small-detail
accuracy, the model and the seconds taken. See docs/eval.md for the metrics' exact rules.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llava_demo.backends import BackendError, make_backend
from llava_demo.backends.local import LocalBackend
from llava_demo.presets import PresetError, UnknownModelError, resolve_model
from trainer.llava.data import DataError
from trainer.llava.eval.ablation import ablation_config, ablation_report
from trainer.llava.eval.batch import BatchedLocalAnswerer
from trainer.llava.eval.data import EVAL_SET_NAMES, SPLITS, EvalDataError
from trainer.llava.eval.image_use import LossModel, training_template
from trainer.llava.eval.run import Answerer, AnswerError, BackendAnswerer, EvalConfig, run_eval
from trainer.recipes.foundation import world_cache_dir
from trainer.synthworld.config import PRESETS as WORLD_PRESETS
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world
from vision_common.atomic import OutputNotWritableError, atomic_write_json, atomic_write_text
from vision_common.cli_help import HelpFormatter

DEFAULT_MODEL_PRESET = "synthworld-llava-next"
DEFAULT_WORLD_PRESET = "default"
DEFAULT_WORLD_SEED = 0


class EvalCliError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 2."""


def model_world(checkpoint: str) -> tuple[str | None, int | None]:
    """(world preset, seed) the model was trained on, from the LLaVA recipe's manifest beside it; (None, None),
    i.e. the default world, for any other model (a real checkpoint, an older build)."""
    try:
        manifest = json.loads((Path(checkpoint) / "manifest.json").read_text(encoding="utf-8"))
        config = manifest["recipe"]["config"]
        preset, seed = config["world_preset"], config["seed"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if preset not in WORLD_PRESETS or not isinstance(seed, int):
        return None, None
    return preset, seed


def default_world(preset: str | None = None, seed: int | None = None) -> Path:
    """A recipe world (``.cache/synthworld/<preset>-seed<seed>``; the default world when not named), generated
    on first use."""
    preset = DEFAULT_WORLD_PRESET if preset is None else preset
    seed = DEFAULT_WORLD_SEED if seed is None else seed
    world = world_cache_dir(preset, seed)
    if not (world / "manifest.json").is_file():
        print(
            f"SynthWorld world {world} is missing; generating it (about 1-2 minutes, once)", file=sys.stderr
        )
        generate_world(world, WorldConfig.preset(preset), seed=seed, workers=min(2, os.cpu_count() or 1))
    return world


def resolve_checkpoint(model: str) -> tuple[str, str]:
    """(display name, checkpoint) for a preset name or a directory; a missing embedded model says how to
    build it instead of failing inside transformers."""
    try:
        resolved = resolve_model(model)
    except (PresetError, UnknownModelError) as exc:
        raise EvalCliError(str(exc)) from exc
    if resolved.source == "local" and not Path(resolved.checkpoint).is_dir():
        raise EvalCliError(
            f"model {resolved.name!r} is not built yet: {resolved.checkpoint} does not exist. Build the "
            f"embedded SynthWorld LLaVA-NeXT with its recipe (`python -m trainer.recipe --help`), or pass "
            f"--model DIR with an exported LlavaNext directory"
        )
    return resolved.name, resolved.checkpoint


def make_answerer(model: str) -> Answerer:
    """The in-process transformers backend (``make_backend("local", ...)``) answering in batches
    (``BatchedLocalAnswerer``); any other backend is asked one question at a time (``BackendAnswerer``)."""
    try:
        backend = make_backend("local", model)
    except ModuleNotFoundError as exc:
        raise EvalCliError(f"the local chat backend is not available ({exc})") from exc
    except (BackendError, OSError, ValueError) as exc:
        raise EvalCliError(f"cannot load model {model!r}: {type(exc).__name__}: {exc}") from exc
    return BatchedLocalAnswerer(backend) if isinstance(backend, LocalBackend) else BackendAnswerer(backend)


def loss_model_of(answerer: Answerer, checkpoint: str) -> tuple[LossModel | None, str | None]:
    """What ``image_use`` needs from the answerer (its model, processor and training template), or None and
    the reason it cannot be measured."""
    if not isinstance(answerer, BatchedLocalAnswerer):
        return None, "image_use needs the in-process model (the local backend)"
    choice = answerer.backend.template
    fallback = choice.renderer.name if choice.source == "builtin" else None
    template = training_template(checkpoint, fallback)
    if template is None:
        return None, (
            f"{checkpoint} records no training template (llava_trainer.json) and is served with its own chat "
            "template, so its answers cannot be supervised the way it was trained"
        )
    return LossModel(answerer.model, answerer.processor, template), None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.eval", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    llava = commands.add_parser(
        "llava",
        help="LLaVA chat model on the SynthWorld vqa/pope/mc/detail sets",
        formatter_class=HelpFormatter,
    )
    llava.add_argument(
        "--model", default=None, help=f"preset name or model directory (default: {DEFAULT_MODEL_PRESET})"
    )
    llava.add_argument(
        "--world",
        type=Path,
        default=None,
        help="SynthWorld directory (default: .cache/synthworld/default-seed0)",
    )
    llava.add_argument(
        "--split", choices=SPLITS, default="test", help="test: held-out sets; train: built from train scenes"
    )
    size = llava.add_mutually_exclusive_group()
    size.add_argument("--limit", type=int, default=None, help="questions per set (default 300)")
    size.add_argument("--all", action="store_true", help="every question of every set")
    llava.add_argument("--sets", default=",".join(EVAL_SET_NAMES), help="comma-separated subset of the sets")
    llava.add_argument("--descriptions", type=int, default=None, help="detailed-description probes (0 skips)")
    llava.add_argument(
        "--max-new-tokens", type=int, default=None, help="new-token cap for short answers (16)"
    )
    llava.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    llava.add_argument(
        "--batch-size", type=int, default=None, help="questions per generate call (default 32)"
    )
    llava.add_argument(
        "--image-use",
        type=int,
        default=None,
        help="questions per set (vqa, pope) for the image_use loss gaps (default 64, at most --limit; 0 skips)",
    )
    llava.add_argument(
        "--ablation-model",
        default=None,
        help="a second model (e.g. the base-tile-only recipe) to answer the same small-detail questions",
    )
    llava.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    llava.add_argument("--out", type=Path, default=None, help="also write the JSON report here (atomically)")
    llava.add_argument("--predictions", type=Path, default=None, help="write every answer as JSONL here")
    llava.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    overrides: dict[str, Any] = {
        "split": args.split,
        "sets": tuple(s.strip() for s in args.sets.split(",") if s.strip()),
    }
    if args.limit is not None:
        overrides["limit"] = args.limit
    if args.descriptions is not None:
        overrides["description_images"] = args.descriptions
    if args.max_new_tokens is not None:
        overrides["short_max_new_tokens"] = args.max_new_tokens
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.image_use is not None:
        overrides["image_use_records"] = args.image_use
    try:
        return EvalConfig.full(**overrides) if args.all else EvalConfig.quick(**overrides)
    except ValueError as exc:
        raise EvalCliError(f"bad options: {exc}") from exc


def _interval(pair: list[float] | None) -> str:
    return "" if pair is None else f" [{pair[0]:.3f}, {pair[1]:.3f}]"


def format_table(report: dict[str, Any]) -> str:
    """A human-readable summary: headline numbers with 95% intervals, image use, the ablation, then each
    set's per-category scores."""
    lines = [
        f"model {report['model']} ({report['model_path']}), {report['split']} split, {report['seconds']:.1f} s"
    ]
    for key in ("short_answer_accuracy", "yes_no_f1", "multiple_choice_accuracy", "small_detail_accuracy"):
        value = report[key]
        shown = "-" if value is None else f"{value:.3f}{_interval(report['ci95'][key])}"
        lines.append(f"  {key:28} {shown}")
    if "pope" in report["sets"]:
        pooled = report["sets"]["pope"]["pooled"]
        lines.append(
            f"  {'pope yes_ratio':28} {pooled['yes_ratio']:.3f}{_interval(pooled['yes_ratio_ci95'])}"
        )
    for key in ("answers_at_most_3_words", "description_mean_words"):
        value = report[key]
        lines.append(f"  {key:28} {'-' if value is None else f'{value:.2f}'}")
    use = report.get("image_use")
    if use is not None:
        lines.append(
            f"  {'image_use (nats/answer token)':28} gap_other {use['gap_other']:+.4f}, gap_blank "
            f"{use['gap_blank']:+.4f} ({use['records']} records, {use['supervised_tokens']} answer tokens)"
        )
    ablation = report.get("ablation")
    if ablation is not None:
        lines.append(
            f"  {'ablation small_detail':28} {ablation['small_detail_accuracy']:.3f}{_interval(ablation['ci95'])}"
            f" ({ablation['model']}); gain {ablation['small_detail_gain']:+.3f}"
            f"{_interval(ablation['small_detail_gain_ci95'])}"
        )
    for name, summary in report["sets"].items():
        score = "f1" if name == "pope" else "accuracy"
        parts = [f"{cat} {s[score]:.2f} (n={s['n']})" for cat, s in summary["by_category"].items()]
        lines.append(f"  {name:6} {score} by category: " + ", ".join(parts))
    return "\n".join(lines)


def run_ablation(
    model: str,
    world: Path,
    config: EvalConfig,
    main_predictions: list[dict[str, Any]],
    *,
    progress: bool,
) -> dict[str, Any]:
    """The ablation model on the main run's small-detail questions: the report's ``ablation`` object."""
    started = time.perf_counter()
    name, checkpoint = resolve_checkpoint(model)
    try:
        other = run_eval(make_answerer(model), world, config, progress=progress)
    except (EvalDataError, AnswerError) as exc:
        raise EvalCliError(f"ablation model {name}: {exc}") from exc
    report = ablation_report(main_predictions, other.predictions, model=name, model_path=checkpoint)
    return {**report, "seconds": time.perf_counter() - started}


def run_llava(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()  # CPU seconds of all threads: comparable on a loaded machine
    config = config_from_args(args)
    name, checkpoint = resolve_checkpoint(args.model or DEFAULT_MODEL_PRESET)
    if args.ablation_model is not None:
        try:
            ablation_cfg = ablation_config(config)
        except ValueError as exc:
            raise EvalCliError(f"bad options: {exc}") from exc
        resolve_checkpoint(args.ablation_model)  # a missing ablation model fails now, not after the main run
    if args.world is not None and not args.world.is_dir():
        raise EvalCliError(f"--world {args.world} does not exist")
    # By default the model is scored on the held-out scenes of the world it was trained on.
    world = args.world if args.world is not None else default_world(*model_world(checkpoint))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    load_start = time.perf_counter()
    answerer = make_answerer(args.model or DEFAULT_MODEL_PRESET)
    load_seconds = time.perf_counter() - load_start
    loss_model, no_image_use = (
        loss_model_of(answerer, checkpoint) if config.image_use_records else (None, None)
    )
    try:
        result = run_eval(answerer, world, config, progress=not args.no_progress, loss_model=loss_model)
    except (EvalDataError, AnswerError, DataError) as exc:
        raise EvalCliError(str(exc)) from exc
    report = {"model": name, "model_path": checkpoint, **result.report}
    if no_image_use is not None:
        report["image_use_skipped"] = no_image_use
    if args.ablation_model is not None:
        report["ablation"] = run_ablation(
            args.ablation_model, world, ablation_cfg, result.predictions, progress=not args.no_progress
        )
    report["load_seconds"] = load_seconds
    report["eval_seconds"] = report.pop("seconds")
    report["seconds"] = time.perf_counter() - started
    report["cpu_seconds"] = time.process_time() - cpu_started
    if args.predictions is not None:
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in result.predictions)
        atomic_write_text(args.predictions, lines)
    if args.out is not None:
        atomic_write_json(args.out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_llava(args)
    except (EvalCliError, OutputNotWritableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
