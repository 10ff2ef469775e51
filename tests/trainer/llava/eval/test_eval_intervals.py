"""95% intervals of the eval: Wilson values by hand, bootstrap behaviour and determinism, report wiring."""

from __future__ import annotations

import pytest

from trainer.llava.eval.intervals import (
    bootstrap_macro_f1,
    bootstrap_paired_difference,
    wilson_interval,
)
from trainer.llava.eval.metrics import accuracy, yes_no_scores


def test_wilson_matches_hand_computed_values() -> None:
    # Textbook values: 0/10 -> [0, 0.2775], 5/10 -> [0.2366, 0.7634], 10/10 -> [0.7225, 1].
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    # 240 of 300 (0.80): about +-0.045.
    low, high = wilson_interval(240, 300)
    assert low == pytest.approx(0.7510, abs=1e-4) and high == pytest.approx(0.8414, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)


def test_accuracy_and_binary_scores_carry_wilson_intervals() -> None:
    assert accuracy([True] * 5 + [False] * 5).to_json()["ci95"] == pytest.approx([0.23659, 0.76341], abs=1e-5)
    scores = yes_no_scores(["yes"] * 10, ["yes"] * 5 + ["no"] * 5).to_json()
    assert scores["yes_ratio"] == 1.0 and scores["yes_ratio_ci95"] == pytest.approx([0.72247, 1.0], abs=1e-5)
    assert scores["accuracy_ci95"] == pytest.approx([0.23659, 0.76341], abs=1e-5)


def test_bootstrap_macro_f1() -> None:
    gold = [True, False] * 30
    cats = ["random"] * 20 + ["popular"] * 20 + ["adversarial"] * 20
    assert bootstrap_macro_f1(gold, gold, cats) == (1.0, 1.0)  # perfect answers: every resample scores 1
    always_yes = [True] * 60
    low, high = bootstrap_macro_f1(always_yes, gold, cats)
    assert low < 2 / 3 < high and high - low < 0.25  # F1 of always-yes on a balanced set is 2/3
    assert bootstrap_macro_f1(always_yes, gold, cats) == (low, high)  # seeded: reproducible to the digit
    # Four times the data gives a narrower interval.
    low4, high4 = bootstrap_macro_f1(always_yes * 4, gold * 4, cats * 4)
    assert high4 - low4 < (high - low) * 0.7
    # No "yes" reference anywhere: F1 is undefined, reported as 0 like eval_metrics.macro_f1.
    assert bootstrap_macro_f1([True, False], [False, False], ["a", "a"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="length mismatch"):
        bootstrap_macro_f1([True], [True, False], ["a"])


def test_bootstrap_paired_difference() -> None:
    flags = [True, False, True, True]
    assert bootstrap_paired_difference(flags, flags) == (0.0, 0.0)
    assert bootstrap_paired_difference([True] * 8, [False] * 8) == (1.0, 1.0)
    low, high = bootstrap_paired_difference([True] * 30 + [False] * 70, [False] * 100)
    assert low < 0.30 < high and low > 0.15
    with pytest.raises(ValueError, match="same questions"):
        bootstrap_paired_difference([True], [True, False])
