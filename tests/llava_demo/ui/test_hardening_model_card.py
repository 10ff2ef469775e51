"""Issue 19, defect 3 of the issue (model disclosure): the chat says what the embedded model is and knows, and
how to serve a real checkpoint; a text-only greeting gets an honest answer instead of an invented image."""

from __future__ import annotations

import pytest
from PIL import Image

from llava_demo.backends.base import SamplingParams, collect
from llava_demo.backends.image_only import NO_IMAGE_REPLY
from llava_demo.backends.local import LocalBackend, LocalBackendConfig
from llava_demo.presets import load_presets, resolve_model
from llava_demo.server.cli import StartupError, check_local_model
from llava_demo.ui.model_card import model_card_line
from vision_common.chat.conversation import Conversation

EMBEDDED = "synthworld-llava-next"


def test_the_card_line_discloses_the_embedded_model_and_how_to_serve_a_real_one():
    line = model_card_line(EMBEDDED)
    for text in ("tiny LLaVA-NeXT", "synthetic SynthWorld scenes", "nothing else", "may invent details",
                 "assets/models/synthworld-llava-next/README.md", "`--model`",
                 "python app.py --model llava-v1.6-mistral-7b-hf"):  # fmt: skip
        assert text in line, text
    assert model_card_line("llava-v1.6-34b-hf") == (
        "ℹ️ LLaVA-NeXT checkpoint `llava-hf/llava-v1.6-34b-hf` from the Hugging Face hub."
    )
    assert "openai server" in model_card_line("served-name", backend="openai")


def test_only_the_embedded_preset_is_image_only():
    flags = {name: preset.image_only for name, preset in load_presets().items()}
    assert flags.pop(EMBEDDED) is True and not any(flags.values())
    assert resolve_model(EMBEDDED).image_only


@pytest.fixture(scope="module")
def embedded():
    try:
        check_local_model(EMBEDDED)
    except StartupError as exc:
        pytest.skip(f"the embedded model is not built here: {exc}")
    backend = LocalBackend.load(EMBEDDED, LocalBackendConfig.tiny())
    yield backend
    backend.close()


@pytest.mark.slow
def test_a_text_only_greeting_is_answered_without_inventing_an_image(embedded):
    greeting = Conversation().with_user("Hello, who are you?")
    answer = collect(embedded.stream(greeting, SamplingParams.tiny(max_new_tokens=24)))
    assert answer.text == NO_IMAGE_REPLY and answer.finish_reason == "stop"
    with_image = Conversation().with_user(
        "What colour is the shape?", images=[Image.new("RGB", (64, 64), "red")]
    )
    generated = collect(embedded.stream(with_image, SamplingParams.tiny(max_new_tokens=6)))
    assert generated.text != NO_IMAGE_REPLY and generated.usage.prompt_tokens > 0
