"""The teacher interface: symbolic context of one image in, LLaVA-style conversations out.

LLaVA (Sec. 3.3) asks a text-only teacher for three response types per image, each from the same symbolic
context (captions + boxes): a multi-turn ``conversation``, a ``detail``-ed description, and a
``complex_reasoning`` question with a worked answer. A teacher never sees pixels.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trainer.synthworld.questions import SceneView


class ResponseType(str, enum.Enum):
    CONVERSATION = "conversation"
    DETAIL = "detail"
    COMPLEX = "complex_reasoning"


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass(frozen=True)
class Conversation:
    """One generated sample; ``detail`` and ``complex_reasoning`` have exactly one turn."""

    kind: ResponseType
    turns: tuple[Turn, ...]

    def __post_init__(self) -> None:
        if not self.turns:
            raise ValueError(f"{self.kind.value} conversation has no turns")
        if self.kind is not ResponseType.CONVERSATION and len(self.turns) != 1:
            raise ValueError(f"{self.kind.value} must have exactly one turn, got {len(self.turns)}")


@dataclass(frozen=True)
class DroppedReply:
    """A teacher reply that was rejected; kept for the run's counts, never written as data."""

    kind: ResponseType
    reason: str


@dataclass(frozen=True)
class TeacherContext:
    """Everything a teacher may know about one image (no pixels)."""

    image_id: int
    file_name: str
    width: int
    height: int
    captions: tuple[str, ...]
    scene: SceneView
    # Every category name of the dataset: lets a teacher ask about objects that are *not* in the image.
    vocabulary: tuple[str, ...] = ()
    seed: int = 0

    def rng(self, kind: ResponseType) -> random.Random:
        # One stream per (seed, image, type): results do not depend on worker order or on other types.
        return random.Random(f"{self.seed}/{self.image_id}/{kind.value}")


@dataclass(frozen=True)
class TeacherOutput:
    conversations: tuple[Conversation, ...] = ()
    dropped: tuple[DroppedReply, ...] = field(default_factory=tuple)


class Teacher(Protocol):
    """Anything that turns a :class:`TeacherContext` into conversations of the requested types."""

    name: str

    def generate(self, context: TeacherContext, kinds: Sequence[ResponseType]) -> TeacherOutput: ...
