"""The SynthWorld tokenizer: exact round trips, fixed special ids, the vicuna_v1 chat template, offline reload."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from trainer.foundation.special_tokens import IMAGE_TOKEN_ID, SPECIAL_TOKENS, VICUNA_SYSTEM
from trainer.foundation.tokenizer import TokenizerLoadError, load_tokenizer, save_tokenizer, train_tokenizer

_TRAIN_TEXTS = [
    "A small red circle is at the top left of the image.",
    "A large blue striped square sits to the right of a green star.",
    "A sign reading A7 is at the bottom right.",
    "<image>\nWhat colour is the hexagon? Answer the question using a single word or phrase.",
    "The vorn is a purple dotted crescent with an orange marking.",
    "Sign codes: A7, B12, 9Z, QX3.",
] * 20

_ROUND_TRIP = [
    "A7",
    "a7 A7 a7",
    "<image>\nWhat",
    "What is on the sign? A7",
    "héllo wörld — naïve café, 日本語, emoji 🙂",
    "  two leading spaces and trailing  ",
    "tabs\tand\nnew\r\nlines",
    "digits 0123456789 and 3.14159",
    "x<image>y<image><image>",
    "",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(_TRAIN_TEXTS, vocab_size=320)


@pytest.mark.parametrize("text", _ROUND_TRIP)
def test_decode_encode_round_trip_is_exact(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text


def test_special_tokens_have_fixed_ids(tok):
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.image_token == "<image>"
    assert IMAGE_TOKEN_ID == 4


def test_image_token_is_one_token_never_merged_with_neighbours(tok):
    assert tok("<image>", add_special_tokens=False)["input_ids"] == [IMAGE_TOKEN_ID]
    ids = tok("x<image>\nWhat")["input_ids"]
    assert ids.count(IMAGE_TOKEN_ID) == 1
    # The pieces on either side encode exactly as they do on their own.
    assert ids == tok("x")["input_ids"] + [IMAGE_TOKEN_ID] + tok("\nWhat")["input_ids"]
    # No learned merge contains the marker's text.
    assert not [t for t in tok.get_vocab() if "<image>" in t and t != "<image>"]


def test_encoding_adds_no_special_tokens_and_keeps_case(tok):
    ids = tok("A7")["input_ids"]
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids
    assert ids != tok("a7")["input_ids"]
    assert list(tok("A7").keys()) == ["input_ids", "attention_mask"]


def test_vocab_size_is_respected_and_validated():
    small = train_tokenizer(_TRAIN_TEXTS, vocab_size=300)
    assert len(small) == 300
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(_TRAIN_TEXTS, vocab_size=100)


def test_chat_template_renders_vicuna_v1_two_turns(tok):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is red?"}]},
        {"role": "assistant", "content": "A circle."},
        {"role": "user", "content": [{"type": "text", "text": "Where is it?"}]},
    ]
    expected = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. "
        "USER: <image>\nWhat shape is red? ASSISTANT: A circle.</s>USER: Where is it? ASSISTANT:"
    )
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == expected
    without_prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert without_prompt == expected[: -len("ASSISTANT:")]


def test_chat_template_system_message_and_finished_conversation(tok):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "<image>\nQ1"},
        {"role": "assistant", "content": "A1"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert rendered == "Answer briefly. USER: <image>\nQ1 ASSISTANT: A1</s>"
    assert VICUNA_SYSTEM not in rendered
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=False, return_dict=False)
    assert ids[-1] == tok.eos_token_id and ids.count(IMAGE_TOKEN_ID) == 1


def test_chat_template_empty_system_renders_no_system_block(tok):
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": "Q"}]
    assert (
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == "USER: Q ASSISTANT:"
    )


def test_chat_template_rejects_unknown_role(tok):
    with pytest.raises(Exception, match="role must be user or assistant"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_save_and_reload_offline_gives_identical_encodings(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "tok"
    save_tokenizer(tok, out)
    reloaded = load_tokenizer(out)
    plain = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}]
    for other in (reloaded, plain):
        for text in _ROUND_TRIP:
            assert other(text)["input_ids"] == tok(text)["input_ids"]
        assert other.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
            tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
        assert other.image_token == "<image>" and other.pad_token_id == 0
    assert not list(tmp_path.glob(".tok.*")), "atomic save left a temporary directory behind"


def test_load_tokenizer_names_missing_directory(tmp_path):
    with pytest.raises(TokenizerLoadError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "missing")
