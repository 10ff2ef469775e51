"""The lookup probe's prompt orders (issue #18's question-before-image lever): where the question lands
relative to the image tokens, decoded back from the batch."""

from __future__ import annotations

import random

import pytest
import torch

from trainer.foundation.corpus import render_vicuna_v1
from trainer.foundation.tokenizer import train_tokenizer
from trainer.probes.lookup_probe import (
    PROMPT_ORDERS,
    LookupBatcher,
    LookupObject,
    LookupProbeConfig,
    LookupQuestion,
)
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES
from vision_common.chat.format_prompts import SHORT_ANSWER

QUESTION = "What color is the star?"


@pytest.fixture(scope="module")
def tok():
    corpus = [f"What color is the {s}? {c}" for s in SHAPES for c in COLOR_NAMES]
    corpus.append(
        render_vicuna_v1([{"from": "human", "value": f"<image>\nWhat?\n{SHORT_ANSWER}"}], where="-")
    )
    return train_tokenizer(corpus * 2, vocab_size=1000)


@pytest.mark.parametrize(
    ("order", "before_has_question", "after_questions"),
    [("image_first", False, 1), ("question_first", True, 0), ("question_image_question", True, 1)],
)
def test_the_question_sits_where_the_order_says(
    tok, order: str, before_has_question: bool, after_questions: int
) -> None:
    model = torch.nn.Module()
    embedding = torch.nn.Embedding(len(tok), 8)
    model.get_input_embeddings = lambda: embedding  # type: ignore[method-assign]
    batcher = LookupBatcher(model, tok, prompt_order=order)
    question = LookupQuestion((LookupObject("star", "red"),), QUESTION, "red", "color")
    before, after, answer = batcher.tokens(question)
    text_before, text_after = tok.decode(before), tok.decode(after)
    assert (QUESTION in text_before) is before_has_question
    assert text_after.count(QUESTION) == after_questions
    assert text_after.rstrip().endswith("ASSISTANT:") and SHORT_ANSWER in text_after
    _, labels, _, spans = batcher.batch([question], random.Random(0))
    assert spans[0][0] == len(before) + 1 + len(after)  # one object token between the two parts
    assert labels[0, spans[0][0] : spans[0][1]].tolist() == answer


def test_unknown_prompt_order_is_refused() -> None:
    assert set(PROMPT_ORDERS) == {"image_first", "question_first", "question_image_question"}
    assert LookupProbeConfig().prompt_order == "image_first"
    with pytest.raises(ValueError, match="prompt_order must be one of"):
        LookupProbeConfig(prompt_order="image_last")
