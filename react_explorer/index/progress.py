"""How far an index build is, as one record a page can show: "Building the index: 42% (12,600 / 30,000 images)".

A build embeds every image, then every caption, then writes the FAISS indexes. The percentage weighs the
stages by what they cost: on the 2-core reference machine the tiny CLIP embeds about 175 images/s (decoding
included) and 1,200 captions/s, so a caption counts as 0.15 of an image; writing a flat index over 30,000 pairs
takes well under a second, so that stage is shown as 99% until the build is over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STAGES = ("images", "captions", "index")
CAPTION_COST = 0.15  # one caption's embedding time in images' (measured: 175 img/s vs 1,200 captions/s)
LAST_PERCENT = 99  # 100% only once the build is over, not while the index is written


@dataclass(frozen=True)
class BuildProgress:
    """``done`` of ``total`` pool rows through ``stage``; earlier stages are complete."""

    stage: str
    done: int
    total: int
    with_images: bool = True  # a text-only build has no image stage

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"BuildProgress.stage must be one of {STAGES}, got {self.stage!r}")
        if not 0 <= self.done <= self.total:
            raise ValueError(f"BuildProgress.done must be in [0, {self.total}], got {self.done}")

    @property
    def percent(self) -> int:
        """Whole percent of the build's work done (never decreasing along a build, at most ``LAST_PERCENT``)."""
        if self.total == 0 or self.stage == "index":
            return LAST_PERCENT if self.stage == "index" else 0
        image_work = 1.0 if self.with_images else 0.0
        total_work = self.total * (image_work + CAPTION_COST)
        if self.stage == "images":
            done_work = self.done * image_work
        else:
            done_work = self.total * image_work + self.done * CAPTION_COST
        return min(int(100 * done_work / total_work), LAST_PERCENT)

    def describe(self) -> str:
        """``42% (12,600 / 30,000 images)``."""
        if self.stage == "index":
            return f"{self.percent}% ({self.total:,} pairs embedded; writing the index)"
        return f"{self.percent}% ({self.done:,} / {self.total:,} {self.stage})"


ProgressCallback = Callable[[BuildProgress], None]
