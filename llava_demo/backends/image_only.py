"""Turns without an image, for a model that was only ever trained on turns with one.

The embedded SynthWorld model saw an image in every training conversation; asked "Hello, who are you?" it
described a scene that was not there (issue 19). Such models are marked ``image_only`` in the presets, and a
conversation without any image is answered with this explanation instead of a generation: honest, instant, and
the same in the app, the API server and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator

from llava_demo.backends.base import StreamEvent, Usage
from vision_common.chat.conversation import Conversation

NO_IMAGE_REPLY = (
    "I am a tiny model trained only to answer questions about SynthWorld pictures (scenes of coloured "
    "shapes), so I cannot chat without one: add an image and ask about it. For general conversation, serve a "
    "real LLaVA-NeXT checkpoint with --model (for example llava-v1.6-mistral-7b-hf)."
)


def needs_image_reply(conversation: Conversation, image_only: bool) -> bool:
    return image_only and not conversation.images


def no_image_events() -> Iterator[StreamEvent]:
    """The explanation as a normal answer: one delta, then ``done`` (no tokens were generated)."""
    yield StreamEvent.delta(NO_IMAGE_REPLY)
    yield StreamEvent.done("stop", Usage(0, 0, 0))
