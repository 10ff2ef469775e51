"""Scores for the SynthWorld LLaVA eval sets: exact-match accuracy, POPE yes/no scores, multiple choice,
per-category breakdowns and answer-length statistics.

Pure functions over lists of answers; the parsing rules (normalisation, yes/no, option letters) live in
``eval_answers`` and are documented there. Every ratio with an empty denominator is 0.0, not NaN, so a report
is always valid JSON.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from trainer.llava.eval.answers import (
    answers_match,
    extract_choice,
    is_explicit_yes_no,
    parse_yes_no,
    word_count,
)
from trainer.llava.eval.intervals import as_json, wilson_interval

# The format prompt asks for "a single word or phrase"; LLaVA-1.5 counts a short answer as one of <= 3 words.
SHORT_ANSWER_MAX_WORDS = 3


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _check_lengths(**named: Sequence[Any]) -> int:
    lengths = {name: len(values) for name, values in named.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"length mismatch: {lengths}")
    return next(iter(lengths.values()), 0)


@dataclass(frozen=True)
class Accuracy:
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.n)

    def to_json(self) -> dict[str, Any]:
        ci95 = as_json(wilson_interval(self.correct, self.n))
        return {"n": self.n, "correct": self.correct, "accuracy": self.accuracy, "ci95": ci95}


def accuracy(correct: Sequence[bool]) -> Accuracy:
    return Accuracy(n=len(correct), correct=sum(bool(flag) for flag in correct))


def accuracy_by_category(categories: Sequence[str], correct: Sequence[bool]) -> dict[str, Accuracy]:
    """Accuracy per category, categories in sorted order."""
    _check_lengths(categories=categories, correct=correct)
    grouped: dict[str, list[bool]] = {}
    for category, flag in zip(categories, correct):
        grouped.setdefault(category, []).append(bool(flag))
    return {category: accuracy(grouped[category]) for category in sorted(grouped)}


def exact_match(predictions: Sequence[str], answers: Sequence[str | Sequence[str]]) -> list[bool]:
    """Normalised exact match per item (``eval_answers.normalize_answer`` on both sides)."""
    _check_lengths(predictions=predictions, answers=answers)
    return [answers_match(prediction, answer) for prediction, answer in zip(predictions, answers)]


@dataclass(frozen=True)
class BinaryScores:
    """POPE's numbers with "yes" as the positive class. ``explicit`` counts answers that began with yes/no."""

    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    explicit: int

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def yes_ratio(self) -> float:
        # POPE's bias probe: near 0.5 on its balanced sets; far above means the model says yes to anything.
        return _ratio(self.tp + self.fp, self.n)

    def to_json(self) -> dict[str, Any]:
        counts = asdict(self)
        scores = {
            name: getattr(self, name) for name in ("accuracy", "precision", "recall", "f1", "yes_ratio")
        }
        intervals = {
            "accuracy_ci95": as_json(wilson_interval(self.tp + self.tn, self.n)),
            "yes_ratio_ci95": as_json(wilson_interval(self.tp + self.fp, self.n)),
        }
        return {**counts, **scores, **intervals}


def yes_no_scores(predictions: Sequence[str], answers: Sequence[str]) -> BinaryScores:
    """Parse each free-text prediction with ``parse_yes_no`` and score it against a "yes"/"no" answer."""
    _check_lengths(predictions=predictions, answers=answers)
    tp = fp = tn = fn = explicit = 0
    for index, (prediction, answer) in enumerate(zip(predictions, answers)):
        gold = answer.strip().lower()
        if gold not in ("yes", "no"):
            raise ValueError(
                f"yes/no item {index}: the reference answer must be 'yes' or 'no', got {answer!r}"
            )
        said_yes = parse_yes_no(prediction) == "yes"
        explicit += is_explicit_yes_no(prediction)
        if gold == "yes":
            tp += said_yes
            fn += not said_yes
        else:
            fp += said_yes
            tn += not said_yes
    return BinaryScores(n=len(answers), tp=tp, fp=fp, tn=tn, fn=fn, explicit=explicit)


def yes_no_scores_by_category(
    predictions: Sequence[str], answers: Sequence[str], categories: Sequence[str]
) -> dict[str, BinaryScores]:
    """``yes_no_scores`` per negative-sampling category (POPE: random / popular / adversarial)."""
    _check_lengths(predictions=predictions, answers=answers, categories=categories)
    grouped: dict[str, tuple[list[str], list[str]]] = {}
    for prediction, answer, category in zip(predictions, answers, categories):
        preds, golds = grouped.setdefault(category, ([], []))
        preds.append(prediction)
        golds.append(answer)
    return {category: yes_no_scores(*grouped[category]) for category in sorted(grouped)}


def macro_f1(by_category: dict[str, BinaryScores]) -> float:
    """Mean F1 over categories: LLaVA-1.5 reports POPE as the F1 averaged over its three splits.

    A category without a single "yes" reference has no F1 (precision and recall are 0/0, and even a perfect
    model would score 0), so it is left out of the mean; that happens only on small ``--limit`` subsets.
    """
    defined = [scores.f1 for scores in by_category.values() if scores.tp + scores.fn > 0]
    return statistics.fmean(defined) if defined else 0.0


def choice_correct(
    predictions: Sequence[str], options: Sequence[Sequence[str]], answers: Sequence[str]
) -> tuple[list[bool], list[str | None]]:
    """Per item: whether the extracted letter equals the answer letter, and the extracted letter (or None)."""
    _check_lengths(predictions=predictions, options=options, answers=answers)
    letters = [extract_choice(prediction, opts) for prediction, opts in zip(predictions, options)]
    correct = [
        letter is not None and letter == answer.strip().upper() for letter, answer in zip(letters, answers)
    ]
    return correct, letters


@dataclass(frozen=True)
class LengthStats:
    """Words per answer (``eval_answers.word_count``) over a list of answers."""

    n: int
    mean_words: float
    median_words: float
    max_words: int
    at_most_3_words: float  # fraction of answers with <= SHORT_ANSWER_MAX_WORDS words

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def length_stats(answers: Sequence[str]) -> LengthStats:
    counts = [word_count(answer) for answer in answers]
    if not counts:
        return LengthStats(n=0, mean_words=0.0, median_words=0.0, max_words=0, at_most_3_words=0.0)
    short = sum(count <= SHORT_ANSWER_MAX_WORDS for count in counts)
    return LengthStats(
        n=len(counts),
        mean_words=statistics.fmean(counts),
        median_words=float(statistics.median(counts)),
        max_words=max(counts),
        at_most_3_words=short / len(counts),
    )
