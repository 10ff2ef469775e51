"""Answer parsing for the LLaVA eval: VQAv2-style normalisation, POPE yes/no, option-letter extraction."""

from __future__ import annotations

import pytest

from trainer.llava.eval.answers import (
    answers_match,
    extract_choice,
    is_explicit_yes_no,
    normalize_answer,
    option_letters,
    parse_yes_no,
    word_count,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Red", "red"),  # rule 1: lower-case
        ("  top\n left\t", "top left"),  # rule 1: whitespace runs become one space
        ("top-left", "top left"),  # rule 3: punctuation inside a word becomes a space
        ("red, blue", "red blue"),  # rule 3: punctuation touching a space is removed
        ("1,000", "1000"),  # rule 2: digit-comma-digit is one number
        ("3.5", "3.5"),  # rule 4: decimal point kept
        ("circle.", "circle"),  # rule 4: trailing period dropped
        ("Three", "3"),  # rule 5: number words
        ("none", "0"),
        ("The circle", "circle"),  # rule 6: articles
        ("an apple a day", "apple day"),
        ("dont", "don't"),  # rule 7: contractions
        ("it's red", "it's red"),  # the apostrophe is not punctuation
        ("C5X", "c5x"),
        ("", ""),
    ],
)
def test_normalize_answer_rules(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_normalize_answer_drops_articles_even_alone() -> None:
    # VQAv2 drops articles wherever they stand, so a bare option letter "A" normalises to nothing; that is
    # why extract_choice tries its letter rules before any normalised comparison.
    assert normalize_answer("a") == ""
    assert normalize_answer("(A)") == ""
    assert extract_choice("(A)", ["x", "y"]) == "A"


def test_answers_match_accepts_any_listed_answer_and_rejects_near_misses() -> None:
    assert answers_match("Top-left.", "top left")
    assert answers_match("two", ["2", "pair"])
    assert not answers_match("top", "top left")
    assert not answers_match("red circle", "red")
    with pytest.raises(ValueError, match="at least one"):
        answers_match("red", [])


@pytest.mark.parametrize(
    ("text", "expected", "explicit"),
    [
        ("Yes", "yes", True),
        ("No.", "no", True),
        ("no, there is not", "no", True),
        ("Yes, there is not only one circle.", "yes", True),  # leading yes wins (POPE would say no)
        ("There is no circle.", "no", False),  # POPE: a "no" word
        ("It is not there", "no", False),  # POPE: a "not" word
        ("There is a circle. No other shapes.", "yes", False),  # only the first sentence counts
        ("I think so", "yes", False),  # POPE: anything else is yes
        ("", "yes", False),
        ("Nothing", "yes", False),  # "nothing" is not the word "no"
    ],
)
def test_parse_yes_no(text: str, expected: str, explicit: bool) -> None:
    assert parse_yes_no(text) == expected
    assert is_explicit_yes_no(text) is explicit


OPTIONS = ["red", "blue", "top left", "2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A", "A"),
        ("b", "B"),  # the whole answer is the letter: case does not matter
        ("C.", "C"),
        ("(D)", "D"),
        ("[B]:", "B"),
        ("B) blue", "B"),
        ("(C) top left", "C"),
        ("A - red", "A"),
        ("The answer is D.", "D"),
        ("Answer: (B)", "B"),
        ("Option C", "C"),
        ("blue", "B"),  # option text equals the answer
        ("Top-left", "C"),
        ("two", "D"),  # normalised: "two" -> "2"
        ("It is blue.", "B"),  # exactly one option text occurs in the answer
        ("a red one", "A"),  # lower-case "a " is an article, then "red" matches option A
        ("red or blue", None),  # two options occur: ambiguous
        ("E", None),  # not an option letter
        ("I do not know", None),
        ("", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text, OPTIONS) == expected


def test_option_letters_bounds() -> None:
    assert option_letters(4) == "ABCD"
    with pytest.raises(ValueError, match="1..26"):
        option_letters(0)
    with pytest.raises(ValueError, match="1..26"):
        option_letters(27)


def test_word_count() -> None:
    assert [word_count(t) for t in ["", "red", "top left", " a  red\ncircle "]] == [0, 1, 2, 3]
