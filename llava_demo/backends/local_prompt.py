"""Prompt preparation for the in-process backend: render, count tokens (AnyRes included), fit the context.

The original demo budgeted 576 tokens per image while AnyRes uses up to 2,928 (llava.md §2), so long chats
with images overflowed silently. Here every image is counted as the processor expands it: the search for how
many old exchanges to drop uses the AnyRes arithmetic of ``vision_common.anyres.geometry`` configured from the
processor (cheap: no pixels are processed), and the processor's own output for the chosen conversation is
the final word (if it disagrees with the estimate, one more exchange is dropped and it is asked again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llava_demo.backends.base import BackendError, BadRequestError, ContextOverflowError
from vision_common.anyres.geometry import AnyResConfig, num_image_tokens
from vision_common.chat.conversation import DEFAULT_IMAGE_TOKEN, Conversation
from vision_common.chat.templates import PromptRenderer, RenderedPrompt, TemplateError
from vision_common.images.load import LoadedImage


@dataclass(frozen=True)
class ImageTokenCounter:
    """How many placeholder tokens the processor writes for one image of a given (W, H) size."""

    anyres: AnyResConfig
    strategy: str
    has_cls: bool

    def count(self, size: Sequence[int]) -> int:
        return num_image_tokens(size, self.anyres, self.strategy, self.has_cls)

    @classmethod
    def from_processor(cls, processor: Any) -> ImageTokenCounter:
        """Read the tile, patch and pinpoints the processor expands ``<image>`` with (LlavaNextProcessor)."""
        image_processor = processor.image_processor
        crop = image_processor.crop_size
        tile = crop["height"] if isinstance(crop, dict) else crop.height
        pinpoints_hw = image_processor.image_grid_pinpoints
        return cls(
            anyres=AnyResConfig(
                tile=tile, patch=processor.patch_size, pinpoints=tuple((w, h) for h, w in pinpoints_hw)
            ),
            strategy=processor.vision_feature_select_strategy,
            has_cls=bool(processor.num_additional_image_tokens),
        )


@dataclass(frozen=True)
class FittedPrompt:
    """What goes into ``generate``: processor outputs plus the numbers and remarks of the fitting."""

    inputs: Any  # a transformers BatchFeature: input_ids, attention_mask, [pixel_values, image_sizes]
    rendered: RenderedPrompt
    prompt_tokens: int
    image_tokens: int
    max_new_tokens: int
    dropped_exchanges: int
    notices: tuple[str, ...]


def user_turns(conversation: Conversation) -> int:
    return sum(1 for message in conversation.turns if message.role == "user")


def check_no_image_markers(conversation: Conversation, image_token: str) -> None:
    """Typed image markers would make the placeholder count disagree with the images; say so plainly."""
    for index, message in enumerate(conversation.messages):
        if image_token in message.text:
            raise BadRequestError(
                f"message {index} contains {image_token!r} in its text; attach images instead of typing the "
                "marker (the template places one per attached image)"
            )


def render_prompt(renderer: PromptRenderer, conversation: Conversation) -> RenderedPrompt:
    try:
        return renderer.render(conversation)
    except TemplateError as exc:
        raise BadRequestError(f"cannot build the prompt: {exc}") from exc


def run_processor(processor: Any, text: str, images: Sequence[LoadedImage]) -> Any:
    try:
        return processor(text=text, images=[i.image for i in images] or None, return_tensors="pt")
    except (ValueError, TypeError, RuntimeError) as exc:
        raise BackendError(f"the processor could not encode the prompt: {type(exc).__name__}: {exc}") from exc


def estimate_tokens(
    tokenizer: Any, rendered: RenderedPrompt, images: Sequence[LoadedImage], counter: ImageTokenCounter
) -> int:
    """Text tokens (each image marker counted once) plus the extra placeholders each image expands to."""
    text_tokens = len(tokenizer(rendered.text)["input_ids"])
    return text_tokens + sum(counter.count(image.image.size) - 1 for image in images)


def fit_to_context(
    conversation: Conversation,
    images: Sequence[LoadedImage],
    *,
    renderer: PromptRenderer,
    processor: Any,
    counter: ImageTokenCounter,
    image_token_id: int,
    context_length: int,
    max_new_tokens: int,
) -> FittedPrompt:
    """Drop the fewest oldest exchanges so that prompt + ``max_new_tokens`` fits ``context_length``.

    ``images`` are the decoded images of ``conversation`` in order; dropped exchanges take theirs along.
    When only the newest exchange is left and the answer budget still does not fit, ``max_new_tokens`` is
    lowered to the room left (with a notice); when not even the prompt fits, ``ContextOverflowError``.
    """
    if len(images) != len(conversation.images):
        raise ValueError(f"{len(images)} decoded images for {len(conversation.images)} image references")
    check_no_image_markers(conversation, getattr(processor, "image_token", None) or DEFAULT_IMAGE_TOKEN)
    tokenizer = processor.tokenizer
    turns = user_turns(conversation)
    dropped = 0
    while True:
        kept = conversation.drop_oldest_exchanges(dropped)
        kept_images = images[len(images) - len(kept.images) :]
        rendered = render_prompt(renderer, kept)
        last_chance = dropped >= turns - 1
        estimate = estimate_tokens(tokenizer, rendered, kept_images, counter)
        if estimate + max_new_tokens > context_length and not last_chance:
            dropped += 1
            continue
        inputs = run_processor(processor, rendered.text, kept_images)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if prompt_tokens + max_new_tokens <= context_length or last_chance:
            break
        dropped += 1  # the estimate was low; the processor's count decides
    image_tokens = int((inputs["input_ids"] == image_token_id).sum())
    notices: list[str] = []
    if dropped:
        lost = len(images) - len(kept_images)
        with_images = f" and {lost} image{'s' if lost != 1 else ''}" if lost else ""
        notices.append(
            f"dropped the {dropped} oldest exchange{'s' if dropped != 1 else ''}{with_images} to fit the "
            f"model's {context_length}-token context"
        )
    budget = max_new_tokens
    if prompt_tokens + max_new_tokens > context_length:
        room = context_length - prompt_tokens
        if room < 1:
            raise ContextOverflowError(
                f"the newest message alone needs {prompt_tokens} prompt tokens ({image_tokens} of them for "
                f"{len(kept_images)} image(s)), but the model's context holds {context_length} tokens "
                f"(max_new_tokens={max_new_tokens}); shorten the message or send fewer or smaller images",
                prompt_tokens=prompt_tokens,
                max_new_tokens=max_new_tokens,
                context_length=context_length,
            )
        budget = room
        notices.append(
            f"max_new_tokens lowered from {max_new_tokens} to {room}: the prompt uses {prompt_tokens} of the "
            f"model's {context_length}-token context"
        )
    return FittedPrompt(
        inputs=inputs,
        rendered=rendered,
        prompt_tokens=prompt_tokens,
        image_tokens=image_tokens,
        max_new_tokens=budget,
        dropped_exchanges=dropped,
        notices=tuple(notices),
    )
