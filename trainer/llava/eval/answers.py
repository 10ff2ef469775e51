"""Turning a model's free-text answer into something comparable: normalisation, yes/no, option letters.

The rules follow the evaluators the LLaVA papers report with (written for this project, rule by rule):

* ``normalize_answer``: the VQAv2 answer normalisation that LLaVA-1.5 uses for VQAv2 / GQA / TextVQA-style
  short answers (lower-case, punctuation, articles, number words, contractions).
* ``parse_yes_no``: POPE's rule (only the first sentence counts; a "no"/"not" word means no, anything else
  means yes), with one deliberate refinement: an answer that *starts* with yes/no is taken at its word.
* ``extract_choice``: the letter extraction of LLaVA's ScienceQA / MMBench scripts ("A", "A.", "(A)",
  "The answer is A"), then a match against the option texts, as MMBench's heuristic matcher does.

Pure functions only; the scores live in ``eval_metrics``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import MappingProxyType
from typing import Literal

YesNo = Literal["yes", "no"]

# Rule 3: these characters are removed when they touch a space ("red, blue" -> "red blue") and turn into a
# space inside a word ("top-left" -> "top left"), so hyphenated and spaced spellings agree. The apostrophe is
# not listed: it carries meaning in contractions ("don't"). Periods have their own rule (4).
# A string, not a set: the rule is applied mark by mark, and a fixed order keeps the result deterministic.
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!:*#%&~|^$'
# Rule 2: "1,000" is one number, so a comma between digits anywhere disables the space-insertion variant.
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# Rule 4: a period is dropped unless it is a decimal point (digit on both sides: "3.5" stays).
_NON_DECIMAL_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
# Rule 5: number words become digits, so "two" and "2" agree (VQAv2 maps zero..ten and "none").
NUMBER_WORDS = MappingProxyType(
    {
        "none": "0",
        "zero": "0",
        "one": "1",
        "two": "2",
        "three": "3",
        "four": "4",
        "five": "5",
        "six": "6",
        "seven": "7",
        "eight": "8",
        "nine": "9",
        "ten": "10",
    }
)
# Rule 6: articles carry no answer content ("a circle" == "circle").
ARTICLES = frozenset({"a", "an", "the"})
# Rule 7: contractions written without an apostrophe get it back, so "dont" == "don't".
CONTRACTIONS = MappingProxyType(
    {
        "arent": "aren't",
        "cant": "can't",
        "couldnt": "couldn't",
        "didnt": "didn't",
        "doesnt": "doesn't",
        "dont": "don't",
        "hasnt": "hasn't",
        "havent": "haven't",
        "isnt": "isn't",
        "shouldnt": "shouldn't",
        "thats": "that's",
        "theres": "there's",
        "wasnt": "wasn't",
        "werent": "weren't",
        "whats": "what's",
        "wont": "won't",
        "wouldnt": "wouldn't",
    }
)


def _strip_punctuation(text: str) -> str:
    keep_digit_commas = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if mark not in out:
            continue
        touches_space = f"{mark} " in out or f" {mark}" in out
        # VQAv2 decides per character for the whole answer, not per occurrence; we do the same.
        out = out.replace(mark, "" if touches_space or keep_digit_commas else " ")
    return _NON_DECIMAL_PERIOD.sub("", out)


def normalize_answer(text: str) -> str:
    """Normalise a short answer for exact-match comparison.

    Rules, in order: (1) lower-case and turn every whitespace run (newlines, tabs) into one space;
    (2)+(3) strip punctuation: removed where it touches a space or when the answer holds a digit-comma-digit
    number, otherwise replaced by a space; the apostrophe is kept; (4) drop periods except decimal points;
    (5) number words zero..ten and "none" -> digits; (6) drop the articles a/an/the; (7) restore apostrophes
    of common contractions; (8) collapse spaces and strip.

    >>> normalize_answer("  The Top-Left. ")
    'top left'
    >>> normalize_answer("Two")
    '2'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_answer expects a str, got {type(text).__name__}")
    lowered = " ".join(text.lower().split())
    words = []
    for word in _strip_punctuation(lowered).split():
        word = NUMBER_WORDS.get(word, word)
        if word in ARTICLES:
            continue
        words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def answers_match(prediction: str, answer: str | Sequence[str]) -> bool:
    """Normalised exact match; ``answer`` may list several accepted answers (any one matches)."""
    accepted = (answer,) if isinstance(answer, str) else tuple(answer)
    if not accepted:
        raise ValueError("answers_match needs at least one accepted answer")
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(candidate) for candidate in accepted)


def _first_sentence(text: str) -> str:
    # POPE keeps only the text before the first period ("No. There is a dog." -> "No").
    return text.split(".", 1)[0]


def yes_no_words(text: str) -> list[str]:
    """The lower-cased words of the first sentence with punctuation removed (POPE's view of an answer)."""
    return re.sub(r"[^\w\s']", " ", _first_sentence(text).lower()).split()


def parse_yes_no(text: str) -> YesNo:
    """Map a free-text answer to "yes" or "no".

    (1) Only the first sentence counts. (2) If its first word is "yes" or "no", that is the answer.
    (3) Otherwise (POPE's rule) any word "no" or "not" makes it "no". (4) Anything else, including an empty
    answer, is "yes": POPE counts every non-negative answer as yes, so a model that never answers is not
    rewarded on the balanced sets. Refinement (2) differs from POPE only on answers like "Yes, there is not
    only one", which POPE scores as no.
    """
    words = yes_no_words(text)
    if words and words[0] in ("yes", "no"):
        return "yes" if words[0] == "yes" else "no"
    return "no" if any(word in ("no", "not") for word in words) else "yes"


def is_explicit_yes_no(text: str) -> bool:
    """True when the first sentence starts with yes/no, i.e. the answer followed the format instruction."""
    words = yes_no_words(text)
    return bool(words) and words[0] in ("yes", "no")


def option_letters(count: int) -> str:
    if not 1 <= count <= 26:
        raise ValueError(f"multiple choice needs 1..26 options, got {count}")
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:count]


def _letter_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    group = f"([{letters}])"
    return (
        # The whole answer is the letter, bracketed or followed by punctuation: "A", "A.", "(A)", "[B]:".
        re.compile(rf"^[(\[]?{group}[)\].:]{{0,2}}$", re.IGNORECASE),
        # A leading letter with a delimiter: "A. red", "B) circle", "(C) 3", "D: top". Upper-case only, so
        # the article in "a red circle" is not read as option A.
        re.compile(rf"^[(\[]?{group}(?:[)\].:]|\s*-)\s"),
        # A phrase naming the letter: "The answer is B", "answer: (C)", "Option D", "choice A".
        re.compile(rf"\b(?i:answer|option|choice)\s*(?:is\s*|:\s*)?[(\[]?{group}\b[)\]]?"),
    )


def extract_choice(text: str, options: Sequence[str]) -> str | None:
    """The option letter a free-text answer picks, or None when no rule applies.

    Rules, first match wins: (1) the answer is just the letter ("A", "a", "A.", "(A)"); (2) it starts with
    an upper-case letter and a delimiter ("A. red", "(B) circle"); (3) a phrase names it ("The answer is C",
    "Option D"); (4) the normalised answer equals exactly one option's normalised text; (5) exactly one
    option's normalised text occurs in the normalised answer as whole words. An answer that names no option
    is None and scores as wrong: unlike LLaVA's ScienceQA script we do not guess a random letter, so the
    score is deterministic.
    """
    letters = option_letters(len(options))
    stripped = text.strip()
    for pattern in _letter_patterns(letters):
        match = pattern.search(stripped)
        if match:
            return match.group(1).upper()
    answer = normalize_answer(stripped)
    if not answer:
        return None
    normalized = [normalize_answer(option) for option in options]
    equal = [letter for letter, option in zip(letters, normalized) if option and option == answer]
    if len(equal) == 1:
        return equal[0]
    padded = f" {answer} "
    contained = [letter for letter, option in zip(letters, normalized) if option and f" {option} " in padded]
    return contained[0] if len(contained) == 1 else None


def word_count(text: str) -> int:
    """Words in an answer: whitespace-separated tokens, so "top left" is 2 and "C5X" is 1."""
    return len(text.split())
