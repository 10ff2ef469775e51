"""Human-side instructions sampled for description records (written for this project).

LLaVA (Sec. 3.3) pairs each generated description with an instruction drawn at random from a fixed list, so
the model learns that many phrasings ask for the same thing: a brief list for stage-1 caption data and a
detailed list for the ``detail`` response type.
"""

from __future__ import annotations

import random

BRIEF_INSTRUCTIONS: tuple[str, ...] = (
    "Give a short description of this picture.",
    "Summarize what the image shows in one sentence.",
    "Write a brief caption for this image.",
    "What does this picture show? Keep it short.",
    "Describe the image in a few words.",
    "Offer a concise summary of the scene.",
    "Caption this image briefly.",
    "In one sentence, what is in this image?",
    "Provide a compact description of the photo.",
    "Tell me briefly what you see here.",
    "Share a one-line summary of the visual content.",
)

DETAIL_INSTRUCTIONS: tuple[str, ...] = (
    "Describe this image in detail.",
    "Give a thorough description of everything visible in the picture.",
    "Walk me through the contents of this image, object by object.",
    "What can you see in this image? Please be detailed.",
    "Write an elaborate description of the scene, including where things are.",
    "Explain in depth what the picture shows.",
    "Provide a detailed account of the objects in this image and how they are arranged.",
    "Describe the scene carefully, covering each object and its appearance.",
    "Paint a complete picture in words of what this image contains.",
    "Give a comprehensive description of the visual content.",
)


def pick_instruction(choices: tuple[str, ...], rng: random.Random) -> str:
    return choices[rng.randrange(len(choices))]
