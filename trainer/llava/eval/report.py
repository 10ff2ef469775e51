"""Scoring a finished eval run: per-set summaries, the headline numbers and per-item correctness.

Pure: takes the items and the model's answers, returns JSON-ready dicts. The headline keys are the ones
issue 4 asks for (``short_answer_accuracy``, ``yes_no_f1``, ``multiple_choice_accuracy``,
``small_detail_accuracy``); a set that was not run gives ``None`` (JSON null), never a made-up 0. Every
proportion carries its 95% Wilson interval (``ci95``, ``accuracy_ci95``, ``yes_ratio_ci95``) and every F1 a
bootstrap one (``f1_ci95``); ``ci95`` at the top level repeats the headline numbers' intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainer.llava.eval.answers import parse_yes_no
from trainer.llava.eval.data import EvalItem, EvalSetName
from trainer.llava.eval.intervals import as_json, bootstrap_macro_f1
from trainer.llava.eval.metrics import (
    accuracy,
    accuracy_by_category,
    choice_correct,
    exact_match,
    length_stats,
    macro_f1,
    yes_no_scores,
    yes_no_scores_by_category,
)

# Headline key -> (eval set, key inside that set's summary).
HEADLINE: Mapping[str, tuple[EvalSetName, str]] = {
    "short_answer_accuracy": ("vqa", "accuracy"),
    "yes_no_f1": ("pope", "f1"),
    "multiple_choice_accuracy": ("mc", "accuracy"),
    "small_detail_accuracy": ("detail", "accuracy"),
}
# The 95% interval of each headline number inside its set's summary (Wilson for accuracies, bootstrap for F1).
HEADLINE_CI: Mapping[str, str] = {"accuracy": "ci95", "f1": "f1_ci95"}


def _check(items: Sequence[EvalItem], predictions: Sequence[str], name: str) -> None:
    if len(items) != len(predictions):
        raise ValueError(f"{name}: {len(items)} items but {len(predictions)} predictions")
    wrong = [item.where for item in items if item.set_name != name]
    if wrong:
        raise ValueError(f"{name}: items from another set: {wrong[:3]}")


def score_set(
    name: EvalSetName, items: Sequence[EvalItem], predictions: Sequence[str]
) -> tuple[dict[str, Any], list[bool]]:
    """One set's summary and the per-item correctness.

    vqa / detail: normalised exact match. pope: POPE scores per category; ``f1`` is their mean (LLaVA-1.5's
    reported number), ``pooled`` the scores over all probes. mc: extracted letter == answer letter;
    ``unparsed`` counts answers that named no option.
    """
    _check(items, predictions, name)
    categories = [item.category for item in items]
    answers = [item.answer for item in items]
    summary: dict[str, Any] = {}
    if name == "pope":
        by_category = yes_no_scores_by_category(predictions, answers, categories)
        said_yes = [parse_yes_no(prediction) == "yes" for prediction in predictions]
        gold_yes = [answer == "yes" for answer in answers]
        summary["f1"] = macro_f1(by_category)
        summary["f1_ci95"] = as_json(bootstrap_macro_f1(said_yes, gold_yes, categories))
        summary["pooled"] = {
            **yes_no_scores(predictions, answers).to_json(),
            "f1_ci95": as_json(bootstrap_macro_f1(said_yes, gold_yes, ["all"] * len(items))),
        }
        summary["by_category"] = {}
        for category, scores in by_category.items():
            rows = [index for index, item_category in enumerate(categories) if item_category == category]
            interval = bootstrap_macro_f1(
                [said_yes[i] for i in rows], [gold_yes[i] for i in rows], [category] * len(rows)
            )
            summary["by_category"][category] = {**scores.to_json(), "f1_ci95": as_json(interval)}
        correct = [parse_yes_no(prediction) == answer for prediction, answer in zip(predictions, answers)]
    else:
        if name == "mc":
            correct, letters = choice_correct(predictions, [item.options for item in items], answers)
            summary["unparsed"] = sum(letter is None for letter in letters)
        else:
            correct = exact_match(predictions, answers)
        summary.update(accuracy(correct).to_json())
        summary["by_category"] = {
            category: acc.to_json() for category, acc in accuracy_by_category(categories, correct).items()
        }
    summary["answer_length"] = length_stats(predictions).to_json()
    return summary, correct


def build_report(
    items: Mapping[EvalSetName, Sequence[EvalItem]],
    predictions: Mapping[EvalSetName, Sequence[str]],
    descriptions: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[EvalSetName, list[bool]]]:
    """The metrics part of the report and each set's per-item correctness.

    ``answer_length.format_prompted`` pools every eval-set answer (all carry a format instruction: single
    word/phrase or option letter); ``answer_length.description`` covers the detailed-description probes.
    """
    if set(items) != set(predictions):
        raise ValueError(f"sets with items {sorted(items)} but predictions for {sorted(predictions)}")
    sets: dict[str, Any] = {}
    correct: dict[EvalSetName, list[bool]] = {}
    for name in items:
        sets[name], correct[name] = score_set(name, items[name], predictions[name])
    report: dict[str, Any] = {
        key: sets[name][field] if name in sets else None for key, (name, field) in HEADLINE.items()
    }
    report["ci95"] = {
        key: sets[name][HEADLINE_CI[field]] if name in sets else None
        for key, (name, field) in HEADLINE.items()
    }
    pooled = [answer for name in items for answer in predictions[name]]
    format_lengths = length_stats(pooled)
    description_lengths = length_stats(descriptions)
    report["answers_at_most_3_words"] = format_lengths.at_most_3_words if pooled else None
    report["description_mean_words"] = description_lengths.mean_words if descriptions else None
    report["counts"] = {name: len(items[name]) for name in items}
    report["counts"]["description"] = len(descriptions)
    report["sets"] = sets
    report["answer_length"] = {
        "format_prompted": format_lengths.to_json(),
        "description": description_lengths.to_json(),
    }
    return report, correct
