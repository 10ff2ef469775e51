"""Eval scores on small hand-worked lists: exact match, POPE precision/recall/F1, choices, answer lengths."""

from __future__ import annotations

import pytest

from trainer.llava.eval.metrics import (
    BinaryScores,
    accuracy,
    accuracy_by_category,
    choice_correct,
    exact_match,
    length_stats,
    macro_f1,
    yes_no_scores,
    yes_no_scores_by_category,
)

# Six POPE answers worked by hand ("yes" is the positive class):
#   0 "Yes"                      -> yes, gold yes: TP
#   1 "No."                      -> no,  gold yes: FN
#   2 "yes, there is one"        -> yes, gold no:  FP
#   3 "There is no circle."      -> no,  gold no:  TN
#   4 "I see a star"             -> yes, gold yes: TP   (POPE: no "no"/"not" word means yes)
#   5 "Not in this image"        -> no,  gold yes: FN
# TP=2 FP=1 TN=1 FN=2: accuracy 3/6, precision 2/3, recall 2/4, F1 = 2*(2/3)(1/2)/(2/3+1/2) = 4/7,
# yes-ratio (said yes) 3/6; answers that begin with yes/no: 0, 1, 2 -> 3.
POPE_PREDICTIONS = [
    "Yes",
    "No.",
    "yes, there is one",
    "There is no circle.",
    "I see a star",
    "Not in this image",
]
POPE_ANSWERS = ["yes", "yes", "no", "no", "yes", "yes"]


def test_yes_no_scores_on_the_hand_worked_example() -> None:
    scores = yes_no_scores(POPE_PREDICTIONS, POPE_ANSWERS)
    assert (scores.tp, scores.fp, scores.tn, scores.fn, scores.explicit) == (2, 1, 1, 2, 3)
    assert scores.accuracy == pytest.approx(0.5)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(0.5)
    assert scores.f1 == pytest.approx(4 / 7)
    assert scores.yes_ratio == pytest.approx(0.5)
    assert scores.to_json()["f1"] == pytest.approx(4 / 7)


def test_yes_no_scores_per_category_and_macro_f1() -> None:
    categories = ["random", "random", "random", "adversarial", "adversarial", "adversarial"]
    by_category = yes_no_scores_by_category(POPE_PREDICTIONS, POPE_ANSWERS, categories)
    assert list(by_category) == ["adversarial", "random"]
    # random: items 0 (TP), 1 (FN), 2 (FP): precision 1/2, recall 1/2, F1 1/2.
    assert by_category["random"].f1 == pytest.approx(0.5)
    # adversarial: items 3 (TN), 4 (TP), 5 (FN): precision 1, recall 1/2, F1 2/3.
    assert by_category["adversarial"].f1 == pytest.approx(2 / 3)
    assert macro_f1(by_category) == pytest.approx((0.5 + 2 / 3) / 2)
    assert macro_f1({}) == 0.0
    # A category with no "yes" reference has no F1 and stays out of the mean, even when answered perfectly.
    only_no = yes_no_scores(["no"], ["no"])
    assert only_no.f1 == 0.0
    assert macro_f1({**by_category, "popular": only_no}) == pytest.approx((0.5 + 2 / 3) / 2)


def test_yes_no_degenerate_cases_give_zero_not_nan() -> None:
    always_no = yes_no_scores(["no", "no"], ["yes", "no"])
    assert (always_no.precision, always_no.recall, always_no.f1, always_no.yes_ratio) == (0.0, 0.0, 0.0, 0.0)
    assert BinaryScores(0, 0, 0, 0, 0, 0).accuracy == 0.0


def test_yes_no_rejects_a_reference_that_is_not_yes_or_no() -> None:
    with pytest.raises(ValueError, match="item 1.*'maybe'"):
        yes_no_scores(["yes", "yes"], ["yes", "maybe"])
    with pytest.raises(ValueError, match="length mismatch"):
        yes_no_scores(["yes"], ["yes", "no"])


def test_exact_match_and_breakdown_by_category() -> None:
    predictions = ["Red.", "a circle", "3", "top", "C5X", "blue"]
    answers = ["red", "circle", "three", "top left", "c5x", "green"]
    categories = ["color", "shape", "count", "position", "text", "color"]
    correct = exact_match(predictions, answers)
    assert correct == [True, True, True, False, True, False]
    assert accuracy(correct).accuracy == pytest.approx(4 / 6)
    by_category = accuracy_by_category(categories, correct)
    assert list(by_category) == ["color", "count", "position", "shape", "text"]
    assert (by_category["color"].n, by_category["color"].correct) == (2, 1)
    assert by_category["position"].accuracy == 0.0
    assert by_category["text"].to_json() == {
        "n": 1,
        "correct": 1,
        "accuracy": 1.0,
        "ci95": [pytest.approx(0.20654, abs=1e-5), 1.0],  # Wilson at 1/1
    }


def test_choice_correct_counts_unparsed_answers_as_wrong() -> None:
    options = [["red", "blue", "green", "gray"]] * 4
    correct, letters = choice_correct(
        ["B", "The answer is C.", "green", "no idea"], options, ["B", "A", "C", "D"]
    )
    assert letters == ["B", "C", "C", None]
    assert correct == [True, False, True, False]


def test_length_stats() -> None:
    # word counts 1, 2, 3, 4, 10: mean 4, median 3, max 10, <= 3 words: 3 of 5.
    stats = length_stats(["red", "top left", "a red circle", "it is a star", " ".join(["w"] * 10)])
    assert stats.n == 5
    assert stats.mean_words == pytest.approx(4.0)
    assert stats.median_words == 3.0
    assert stats.max_words == 10
    assert stats.at_most_3_words == pytest.approx(0.6)
    assert length_stats([]).to_json() == {
        "n": 0,
        "mean_words": 0.0,
        "median_words": 0.0,
        "max_words": 0,
        "at_most_3_words": 0.0,
    }
