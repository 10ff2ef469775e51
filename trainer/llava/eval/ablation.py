"""The report's ``ablation`` object: a second model (e.g. the base-tile-only recipe) on the same small-detail
questions, and how much the evaluated model gains over it.

Issue 18 asks AnyRes to pay: ``small_detail_accuracy`` with AnyRes >= the same recipe with the base tile only
+ 0.10. Both models answer the identical questions (``select_items`` is deterministic), so the gain gets a
paired bootstrap interval, which is much tighter than two independent intervals would suggest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from trainer.llava.eval.intervals import as_json, bootstrap_paired_difference, wilson_interval
from trainer.llava.eval.run import EvalConfig

ABLATION_SET = "detail"


def ablation_config(config: EvalConfig) -> EvalConfig:
    """The main run's config cut down to the small-detail set: same split, limit and token cap."""
    if ABLATION_SET not in config.sets:
        raise ValueError(
            f"an ablation model is compared on the {ABLATION_SET!r} set, which --sets leaves out"
        )
    return replace(config, sets=(ABLATION_SET,), description_images=0, image_use_records=0)


def _detail_correct(predictions: Sequence[dict[str, Any]], label: str) -> dict[int, bool]:
    correct = {p["question_id"]: bool(p["correct"]) for p in predictions if p["set"] == ABLATION_SET}
    if not correct:
        raise ValueError(f"the {label} run has no {ABLATION_SET!r} predictions")
    return correct


def ablation_report(
    main_predictions: Sequence[dict[str, Any]],
    ablation_predictions: Sequence[dict[str, Any]],
    *,
    model: str,
    model_path: str,
) -> dict[str, Any]:
    """The ablation's small-detail accuracy with its Wilson interval, and the main model's gain over it
    (main minus ablation) with a paired bootstrap interval. Both runs must have answered the same questions."""
    main = _detail_correct(main_predictions, "main")
    ablation = _detail_correct(ablation_predictions, "ablation")
    if set(main) != set(ablation):
        raise ValueError(
            f"the two models answered different {ABLATION_SET!r} questions ({len(main)} vs {len(ablation)}); "
            "they must share the world, split and limit"
        )
    ids = sorted(main)
    main_flags = [main[i] for i in ids]
    ablation_flags = [ablation[i] for i in ids]
    n, hits = len(ids), sum(ablation_flags)
    gain = (sum(main_flags) - hits) / n
    return {
        "model": model,
        "model_path": model_path,
        "n": n,
        "correct": hits,
        "small_detail_accuracy": hits / n,
        "ci95": as_json(wilson_interval(hits, n)),
        "small_detail_gain": gain,
        "small_detail_gain_ci95": as_json(bootstrap_paired_difference(main_flags, ablation_flags)),
    }
