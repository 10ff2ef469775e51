"""Batched eval answers: one left-padded ``generate`` over many questions gives exactly the greedy tokens and
texts of answering one question at a time, with images of different AnyRes sizes in one batch."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from llava_demo.backends import make_backend
from llava_demo.backends.local import LocalBackend
from tests.support.tiny_llava import build_tiny_llava
from trainer.foundation.tokenizer import train_tokenizer
from trainer.llava.eval.batch import BatchedLocalAnswerer, answer_text, cut_generated
from trainer.llava.eval.run import AnswerError, BackendAnswerer, Question

# (width, height) -> image tokens with the tiny AnyRes config: 36, 52, 56, 70 (tests/tiny_llava.py).
SIZES = [(32, 32), (100, 50), (50, 100), (300, 200)]
PROMPTS = [
    "What color is the circle?\nAnswer the question using a single word or phrase.",
    "Is there a red star in the image?",
    "How many shapes are there in the picture? Answer with one number.",
    "Describe the sign.",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("batch") / "tiny-llava")


@pytest.fixture(scope="module")
def backend(model_dir: Path):  # type: ignore[no-untyped-def]
    with make_backend("local", str(model_dir), device="cpu") as loaded:
        yield loaded


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(8):  # blocks, so tiles and images differ
        block = Image.new("RGB", (12, 12), tuple(rng.randrange(256) for _ in range(3)))
        image.paste(block, (rng.randrange(size[0]), rng.randrange(size[1])))
    return image


def _questions() -> list[Question]:
    # Every size with every prompt, mixed in one list, with two token caps.
    return [
        Question(_image(size, seed=i), PROMPTS[(i + j) % len(PROMPTS)], 6 + 4 * ((i + j) % 2), f"q{i}.{j}")
        for i, size in enumerate(SIZES)
        for j in range(3)
    ]


@pytest.mark.slow
def test_batched_tokens_equal_one_at_a_time_greedy_tokens(backend: LocalBackend) -> None:
    answerer = BatchedLocalAnswerer(backend)
    prepared = [answerer.prepare(question) for question in _questions()]
    batched = answerer.generate_ids(prepared)
    alone = [answerer.generate_ids([p])[0] for p in prepared]
    assert batched == alone
    # The batch really mixed prompt lengths (left padding) and AnyRes grids, and the caps were honoured.
    processor = backend.processor
    lengths = {len(processor(text=p.text, images=[p.image])["input_ids"][0]) for p in prepared}
    assert len(lengths) >= 4
    assert [len(ids) for ids in batched] == [p.max_new_tokens for p in prepared]  # random weights: no EOS


@pytest.mark.slow
def test_batched_texts_equal_the_chat_backend_answers(backend: LocalBackend) -> None:
    questions = _questions()
    batched = BatchedLocalAnswerer(backend).answer_batch(questions)
    one_by_one = [BackendAnswerer(backend).answer(q.image, q.prompt, q.max_new_tokens) for q in questions]
    assert batched == one_by_one
    assert len(set(batched)) > 1  # not a degenerate model that says one thing to everything


def test_eos_and_stop_strings_cut_rows_like_the_streaming_backend() -> None:
    tokenizer = train_tokenizer(["a red star. USER: what is it? ASSISTANT: red"] * 4, vocab_size=300)
    eos = tokenizer.eos_token_id
    ids = tokenizer("red star", add_special_tokens=False)["input_ids"]
    # End of sequence: kept (as generate keeps it), nothing after it; decoded away in the text.
    row = [*ids, eos, *ids]
    assert cut_generated(row, budget=20, eos_ids=[eos], stops=(), tokenizer=tokenizer) == [*ids, eos]
    assert answer_text([*ids, eos], ("</s>",), tokenizer) == "red star"
    # The budget cuts first.
    assert cut_generated(row, budget=1, eos_ids=[eos], stops=(), tokenizer=tokenizer) == ids[:1]
    # A plain-text stop string: generation stops at the token completing it; the text ends before it.
    spoken = tokenizer(" red USER: more", add_special_tokens=False)["input_ids"]
    cut = cut_generated(spoken, budget=20, eos_ids=[eos], stops=("USER:",), tokenizer=tokenizer)
    assert "USER:" in tokenizer.decode(cut) and "more" not in tokenizer.decode(cut)
    assert answer_text(cut, ("USER:",), tokenizer) == "red"


def test_context_overflow_names_the_question(model_dir: Path) -> None:
    with make_backend("local", str(model_dir), device="cpu", context_length=40) as small:
        answerer = BatchedLocalAnswerer(small)
        question = Question(_image((32, 32), 0), PROMPTS[0], 4, "vqa question 7")
        with pytest.raises(AnswerError, match=r"^vqa question 7: ContextOverflowError: .* holds 40"):
            answerer.answer_batch([question])


def test_a_closed_backend_is_refused(model_dir: Path) -> None:
    loaded = make_backend("local", str(model_dir), device="cpu")
    loaded.close()
    with pytest.raises(ValueError, match="closed"):
        BatchedLocalAnswerer(loaded)
