"""The vocabulary of SynthWorld as plain data: shapes, colours, patterns, sizes, sign words and species.

Everything that names a visual concept lives here so that rendering, captions, questions and tasks agree on
spelling. Class names are written exactly as a person would type them (lower case, no underscores).
"""

from __future__ import annotations

from dataclasses import dataclass

# COCO category ids 1..10 in this order; the sign is category 11.
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "diamond",
    "cross",
    "ring",
    "pentagon",
    "crescent",
)
SIGN = "sign"
CATEGORIES: tuple[str, ...] = (*SHAPES, SIGN)

# Fixed palette; renderers add a small seeded jitter so colour is not a single RGB value.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 215, 40),
    "green": (45, 165, 60),
    "cyan": (40, 200, 215),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (245, 135, 195),
    "brown": (125, 75, 35),
    "gray": (128, 128, 128),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
SIZES: tuple[str, ...] = ("small", "medium", "large")

# Marks of ordinary patterned objects are near-black, never a palette colour, so "what colour is it" keeps a
# single answer. Only species carry a second palette colour (their marking colour).
PATTERN_INK: tuple[int, int, int] = (35, 35, 40)

# Sign plates are light and carry dark text; neither is a palette colour, so signs have no colour attribute.
SIGN_PLATE: tuple[int, int, int] = (246, 242, 228)
SIGN_INK: tuple[int, int, int] = (20, 24, 60)
# What signs say: a closed vocabulary of short words, so a sign is a visual class a tiny tower can learn to
# tell apart (like a shape) and a caption names it often enough to teach it. Random 2-3 character codes
# (2,139 distinct among 2,721 train signs) gave a contrastive tower no reason to read them (issue #18).
# All words have four letters, so a sign's plate size says nothing about its word.
SIGN_WORDS: tuple[str, ...] = (
    "STOP", "EXIT", "OPEN", "SALE", "PUSH", "WAIT", "SLOW", "PARK",
    "CAFE", "BANK", "TAXI", "FOOD", "HELP", "ZONE", "MENU", "GOLF",
)  # fmt: skip
SIGN_WORD_LETTERS: str = "".join(sorted({char for word in SIGN_WORDS for char in word}))


@dataclass(frozen=True)
class Species:
    """A made-up fine-grained kind: fixed shape, body colour, pattern and marking colour."""

    name: str
    shape: str
    color: str
    pattern: str
    marking: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"species {self.name!r}: unknown shape {self.shape!r}")
        if self.color not in COLORS or self.marking not in COLORS:
            raise ValueError(f"species {self.name!r}: colours must come from the palette")
        if self.color == self.marking:
            raise ValueError(f"species {self.name!r}: marking colour equals body colour")
        if self.pattern == "plain":
            raise ValueError(f"species {self.name!r}: a species needs a visible pattern for its marking")


def _species_table() -> tuple[Species, ...]:
    # Eight (shape, colour) bases with three species each: siblings differ only in pattern or marking colour,
    # which is what makes the species task fine-grained.
    bases = (
        ("star", "red", "yellow", "blue"),
        ("circle", "blue", "orange", "pink"),
        ("triangle", "green", "yellow", "purple"),
        ("hexagon", "purple", "cyan", "yellow"),
        ("diamond", "orange", "blue", "green"),
        ("pentagon", "cyan", "red", "brown"),
        ("crescent", "yellow", "purple", "red"),
        ("square", "pink", "green", "blue"),
    )
    names = (
        "vorn", "tessel", "quorl", "marrix", "zephid", "brindor", "caskel", "dovet",
        "elvyn", "fennik", "grisk", "halvet", "ibbor", "jorrel", "kestrin", "lumet",
        "mivvy", "norrel", "ospin", "pellam", "quorra", "rusket", "sabbel", "tindor",
    )  # fmt: skip
    table = []
    for index, (shape, color, marking_a, marking_b) in enumerate(bases):
        variants = (("striped", marking_a), ("dotted", marking_a), ("striped", marking_b))
        for offset, (pattern, marking) in enumerate(variants):
            table.append(Species(names[3 * index + offset], shape, color, pattern, marking))
    return tuple(table)


SPECIES: tuple[Species, ...] = _species_table()
SPECIES_BY_NAME: dict[str, Species] = {species.name: species for species in SPECIES}

PLURALS: dict[str, str] = {
    "cross": "crosses",
    # Irregular COCO names, so questions about real COCO images read naturally.
    "person": "people",
    "sheep": "sheep",
    "skis": "pairs of skis",
    "scissors": "pairs of scissors",
    "mouse": "mice",
    "knife": "knives",
    "broccoli": "pieces of broccoli",
}


def plural(noun: str) -> str:
    """English plural of a category name ("star" -> "stars", "bus" -> "buses", "person" -> "people")."""
    if noun in PLURALS:
        return PLURALS[noun]
    head, _, last = noun.rpartition(" ")
    prefix = f"{head} " if head else ""
    if last in PLURALS:
        return prefix + PLURALS[last]
    if last.endswith(("s", "x", "z", "ch", "sh")):
        return f"{prefix}{last}es"
    if last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        return f"{prefix}{last[:-1]}ies"
    return f"{prefix}{last}s"


def with_article(noun: str) -> str:
    """'a star', 'an hexagon' is wrong English, so only vowel letters take 'an' ('an orange star')."""
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
