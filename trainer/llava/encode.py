"""One conversation -> ``input_ids`` and ``labels`` (the supervised-token mask), with images expanded.

The rendered prompt's segments (``vision_common.chat.templates``) say which characters are trainable: assistant
answers and their end-of-turn text. The whole prompt is tokenized once (exactly as inference tokenizes it)
and a token is supervised when its character span overlaps a trainable span. That is LLaVA's
``preprocess_v1`` rule without re-splitting on separators: a token that merges the space of
"ASSISTANT: " with the first word of the answer is supervised, as the model must generate it after
"ASSISTANT:". Each ``<image>`` token is then replaced by the AnyRes number of placeholder ids (label -100),
which is what ``LlavaNextProcessor`` does before tokenizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from vision_common.chat.templates import RenderedPrompt

IGNORE_INDEX = -100


class EncodingError(ValueError):
    """A prompt cannot be turned into training ids; the message names the sample."""


@dataclass(frozen=True)
class EncodedSample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise EncodingError("input_ids and labels must have the same length")

    @property
    def num_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return end > start and any(start < span_end and span_start < end for span_start, span_end in spans)


def encode_prompt(
    rendered: RenderedPrompt,
    tokenizer: PreTrainedTokenizerBase,
    *,
    image_token_id: int,
    image_token_counts: Sequence[int],
    where: str = "sample",
) -> EncodedSample:
    """Tokenize ``rendered`` and build labels; ``image_token_counts[i]`` placeholders replace image ``i``.

    Special tokens the tokenizer adds itself (e.g. a BOS) have empty offsets and stay unsupervised, as
    LLaVA masks the BOS.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise EncodingError(f"{where}: a fast tokenizer is needed (character offsets build the label mask)")
    encoded = tokenizer(rendered.text, return_offsets_mapping=True, add_special_tokens=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    spans = rendered.trainable_spans()
    image_positions = [i for i, token in enumerate(ids) if token == image_token_id]
    if len(image_positions) != len(image_token_counts):
        raise EncodingError(
            f"{where}: the prompt tokenizes to {len(image_positions)} image token(s) (id {image_token_id}) "
            f"but has {len(image_token_counts)} image(s); is '<image>' a special token of the tokenizer?"
        )
    input_ids: list[int] = []
    labels: list[int] = []
    counts = iter(image_token_counts)
    for token, (start, end) in zip(ids, offsets):
        trainable = _overlaps(start, end, spans)
        if token == image_token_id:
            if trainable:
                raise EncodingError(f"{where}: an image token falls inside a supervised answer")
            count = next(counts)
            input_ids.extend([image_token_id] * count)
            labels.extend([IGNORE_INDEX] * count)
            continue
        input_ids.append(token)
        labels.append(token if trainable else IGNORE_INDEX)
    if not any(label != IGNORE_INDEX for label in labels):
        raise EncodingError(f"{where}: no supervised tokens (the conversation has no assistant answer)")
    return EncodedSample(tuple(input_ids), tuple(labels))
