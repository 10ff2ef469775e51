"""Conversation templates: exact LLaVA layouts (llava.md §4), segment invariants, stop strings, errors, and the
checkpoint (Jinja) renderer with its selection policy.

Expected strings are written out by hand from the reference layouts, not produced by the renderer.
"""

from __future__ import annotations

import pytest

from vision_common.chat.checkpoint_templates import choose_template, from_chat_template
from vision_common.chat.conversation import Conversation, ConversationError
from vision_common.chat.templates import (
    TEMPLATES,
    RenderedPrompt,
    TemplateError,
    UnknownTemplateError,
    get_template,
    render,
    template_names,
)

SYS_VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SYS_HUMAN = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
SYS_LLAMA = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)
L3_SYS = "<|start_header_id|>system<|end_header_id|>\n\n"
L3_USER = "<|start_header_id|>user<|end_header_id|>\n\n"
L3_ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"

SINGLE = Conversation().with_user("Q1", ["img-a"])
TWO_TURNS = SINGLE.with_assistant("A1").with_user("Q2")
TWO_IMAGES = SINGLE.with_assistant("A1").with_user("Q2", ["img-b"])

# (template, conversation, expected text) — the §4 layouts, plus the per-turn image rule.
EXACT = [
    ("vicuna_v1", SINGLE, f"{SYS_VICUNA} USER: <image>\nQ1 ASSISTANT:"),
    ("vicuna_v1", TWO_TURNS, f"{SYS_VICUNA} USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"),
    (
        "vicuna_v1",
        TWO_IMAGES,
        f"{SYS_VICUNA} USER: <image>\nQ1 ASSISTANT: A1</s>USER: <image>\nQ2 ASSISTANT:",
    ),
    (
        "vicuna_v1",
        TWO_TURNS.with_system("Be brief."),
        "Be brief. USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:",
    ),
    ("v1", TWO_TURNS, f"{SYS_VICUNA} USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"),
    ("llava_v1", TWO_TURNS, f"{SYS_HUMAN} USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"),
    ("mistral_instruct", SINGLE, "[INST] <image>\nQ1 [/INST]"),
    ("mistral_instruct", TWO_TURNS, "[INST] <image>\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]"),
    ("mistral_instruct", TWO_IMAGES, "[INST] <image>\nQ1 [/INST] A1 </s>[INST] <image>\nQ2 [/INST]"),
    (
        "mistral_instruct",
        TWO_TURNS.with_system("Be brief."),
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<image>\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]",
    ),
    (
        "llava_llama_2",
        TWO_TURNS,
        f"[INST] <<SYS>>\n{SYS_LLAMA}\n<</SYS>>\n\n<image>\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST]",
    ),
    (
        "chatml_direct",
        SINGLE,
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\nQ1<|im_end|>"
        "<|im_start|>assistant\n",
    ),
    (
        "chatml_direct",
        TWO_IMAGES,
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\nQ1<|im_end|>"
        "<|im_start|>assistant\nA1<|im_end|><|im_start|>user\n<image>\nQ2<|im_end|><|im_start|>assistant\n",
    ),
    (
        "chatml_direct",
        SINGLE.with_system("Be brief."),
        "<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\n<image>\nQ1<|im_end|><|im_start|>assistant\n",
    ),
    ("llama_3", SINGLE, f"{L3_SYS}{SYS_LLAMA}<|eot_id|>{L3_USER}<image>\nQ1<|eot_id|>{L3_ASSISTANT}"),
    (
        "llava_llama_3",
        TWO_IMAGES,
        f"{L3_SYS}{SYS_LLAMA}<|eot_id|>{L3_USER}<image>\nQ1<|eot_id|>{L3_ASSISTANT}A1<|eot_id|>"
        f"{L3_USER}<image>\nQ2<|eot_id|>{L3_ASSISTANT}",
    ),
    # Llama-3 trims message text like Meta's template does.
    (
        "llama_3",
        Conversation().with_system(" S ").with_user("  Q1 \n", ["img"]),
        f"{L3_SYS}S<|eot_id|>{L3_USER}<image>\nQ1<|eot_id|>{L3_ASSISTANT}",
    ),
    # Several images in one turn: one marker each, in order, at the front.
    (
        "vicuna_v1",
        Conversation().with_user("Compare.", ["a", "b"]),
        f"{SYS_VICUNA} USER: <image>\n<image>\nCompare. ASSISTANT:",
    ),
    ("plain", Conversation().with_user("ignored", ["img"]), "<image>"),
    # An empty system message removes the system block entirely.
    (
        "chatml_direct",
        SINGLE.with_system(""),
        "<|im_start|>user\n<image>\nQ1<|im_end|><|im_start|>assistant\n",
    ),
]


@pytest.mark.parametrize(("name", "conversation", "expected"), EXACT)
def test_exact_layout(name, conversation, expected):
    prompt = render(conversation, name)
    assert prompt.text == expected
    assert "".join(s.text for s in prompt.segments) == expected
    assert prompt.images == conversation.images


def test_plain_is_image_tag_plus_caption_and_only_the_caption_is_trained():
    conversation = Conversation().with_user("Describe the image.", ["img"]).with_assistant("a red circle")
    prompt = render(conversation, "plain", add_generation_prompt=False)
    assert prompt.text == "<image>a red circle\n"
    assert [(s.text, s.trainable) for s in prompt.segments] == [("<image>", False), ("a red circle\n", True)]


def test_configurable_image_token():
    prompt = render(TWO_IMAGES, "mistral_instruct", image_token="<img>")
    assert prompt.text == "[INST] <img>\nQ1 [/INST] A1 </s>[INST] <img>\nQ2 [/INST]"


# Hand-listed end-of-turn separators: trainable text must be exactly answer + this, per answer.
END_OF_TURN = {
    "vicuna_v1": "</s>",
    "llava_v1": "</s>",
    "mistral_instruct": " </s>",
    "llava_llama_2": " </s>",
    "chatml_direct": "<|im_end|>",
    "llama_3": "<|eot_id|>",
    "plain": "\n",
}


def test_every_template_has_a_listed_separator():
    assert set(END_OF_TURN) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(END_OF_TURN))
@pytest.mark.parametrize("system", [None, "Custom system."])
def test_segments_tile_the_text_and_only_answers_are_trainable(name, system):
    conversation = (
        Conversation()
        .with_user("first question", ["i1"])
        .with_assistant("first answer")
        .with_user("second question", ["i2", "i3"])
        .with_assistant("second answer")
    )
    if system is not None and name != "plain":
        conversation = conversation.with_system(system)
    prompt = render(conversation, name, add_generation_prompt=False)
    assert "".join(s.text for s in prompt.segments) == prompt.text
    trainable = [s.text for s in prompt.segments if s.trainable]
    assert trainable == [f"first answer{END_OF_TURN[name]}", f"second answer{END_OF_TURN[name]}"]
    assert all(s.role == "assistant" for s in prompt.segments if s.trainable)
    spans = prompt.trainable_spans()
    assert [prompt.text[a:b] for a, b in spans] == trainable
    # Everything outside the spans is the untrained remainder, and the spans end each answer turn.
    assert prompt.text.count("<image>") == 3
    # With a generation prompt the last answer is absent and nothing after the last answer is trainable.
    open_prompt = render(conversation.without_last_answer(), name)
    assert [s.text for s in open_prompt.segments if s.trainable] == trainable[:1]
    assert not open_prompt.segments[-1].trainable


STOPS = {
    "vicuna_v1": ("</s>",),
    "llava_v1": ("</s>",),
    "mistral_instruct": ("</s>",),
    "llava_llama_2": ("</s>",),
    "chatml_direct": ("<|im_end|>",),
    "llama_3": ("<|eot_id|>", "<|end_of_text|>"),
    "plain": ("\n",),
}


@pytest.mark.parametrize(("name", "stops"), sorted(STOPS.items()))
def test_stop_strings(name, stops):
    assert render(SINGLE, name).stop_strings == stops


def test_unknown_template_lists_valid_names():
    with pytest.raises(UnknownTemplateError) as info:
        get_template("mistral_orca")
    for name in ("vicuna_v1", "v1", "llava_v1", "mistral_instruct", "chatml_direct", "llama_3", "plain"):
        assert name in str(info.value)
    with pytest.raises(UnknownTemplateError):
        render(SINGLE, "vicuna")
    assert get_template("v1") is get_template("vicuna_v1")
    assert get_template("llava_llama_3") is get_template("llama_3")
    assert set(template_names()) >= {"v1", "llava_llama_3", *TEMPLATES}


def test_render_errors_name_the_problem():
    finished = TWO_TURNS.with_assistant("A2")
    with pytest.raises(TemplateError, match="ends with a user message"):
        render(finished, "vicuna_v1")
    assert render(finished, "vicuna_v1", add_generation_prompt=False).text.endswith("ASSISTANT: A2</s>")
    with pytest.raises(TemplateError, match="message 0 contains the image token"):
        render(Conversation().with_user("<image>\nWhat is it?", ["img"]), "vicuna_v1")
    with pytest.raises(TemplateError, match="message 0 has no image"):
        render(Conversation().with_user("caption me"), "plain")
    with pytest.raises(TemplateError, match="no system prompt"):
        render(SINGLE.with_system("S"), "plain")
    with pytest.raises(TemplateError, match="ends with nothing"):
        render(Conversation(), "vicuna_v1")


def test_rendered_prompt_rejects_segments_that_do_not_tile():
    prompt = render(SINGLE, "vicuna_v1")
    with pytest.raises(TemplateError, match="do not tile"):
        RenderedPrompt(
            prompt.text + "x", prompt.segments, prompt.stop_strings, prompt.images, prompt.template
        )


# -- checkpoint (Jinja) templates -----------------------------------------------------------------------------


def _tokenizer(chat_template: str | None):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"<unk>": 0, "</s>": 1, "<image>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="</s>", unk_token="<unk>", chat_template=chat_template
    )


@pytest.fixture(scope="module")
def synthworld_tokenizer():
    from trainer.foundation.tokenizer import VICUNA_V1_CHAT_TEMPLATE

    return _tokenizer(VICUNA_V1_CHAT_TEMPLATE)


@pytest.mark.parametrize(
    "conversation", [TWO_IMAGES, TWO_IMAGES.with_system("Be brief.").with_assistant("A2")]
)
def test_checkpoint_template_matches_builtin_vicuna(synthworld_tokenizer, conversation):
    """The SynthWorld tokenizer's Jinja template and the builtin vicuna_v1 agree on text and labels."""
    renderer = from_chat_template(synthworld_tokenizer, content_format="user_parts")
    open_ended = conversation.last_role == "user"
    jinja = renderer.render(conversation, add_generation_prompt=open_ended)
    builtin = render(conversation, "vicuna_v1", add_generation_prompt=open_ended)
    assert jinja.text == builtin.text
    assert jinja.trainable_spans() == builtin.trainable_spans()
    assert jinja.stop_strings == ("</s>",)
    if conversation.system is not None:
        assert jinja.segments == builtin.segments


def test_choose_template_prefers_the_checkpoint_and_finds_its_content_format(synthworld_tokenizer):
    preset = get_template("vicuna_v1")
    choice = choose_template(_Preset("synth", "vicuna_v1"), synthworld_tokenizer)
    assert choice.source == "checkpoint"
    # This template reads the system content as a string, so the "parts" probe fails and "user_parts" wins.
    assert choice.renderer.content_format == "user_parts"
    assert choice.renderer.render(TWO_IMAGES).text == preset.render(TWO_IMAGES).text
    forced = choose_template(_Preset("synth", "vicuna_v1"), synthworld_tokenizer, prefer="builtin")
    assert (forced.source, forced.renderer) == ("builtin", preset)


class _Preset:
    def __init__(self, name: str, template: str | None) -> None:
        self.name, self.template = name, template


# A text-only template: it prints content as-is and never writes an image marker.
TEXT_ONLY = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
# Renders the newest message first, so a longer conversation is not an extension of a shorter one.
REVERSED = (
    "{% for m in messages|reverse %}{{ m['role'] }}: {{ m['content'][-1]['text'] }}<image>\n{% endfor %}"
)


def test_template_that_drops_images_falls_back_to_builtin_or_raises():
    tok = _tokenizer(TEXT_ONLY)
    with pytest.raises(TemplateError, match="marker"):
        from_chat_template(tok).render(SINGLE)
    choice = choose_template(_Preset("m", "mistral_instruct"), tok)
    assert choice.source == "builtin" and choice.renderer is get_template("mistral_instruct")
    assert "probe" in choice.reason
    with pytest.raises(TemplateError, match="no builtin template"):
        choose_template(_Preset("m", None), tok)


def test_no_chat_template_uses_builtin_and_from_chat_template_refuses():
    tok = _tokenizer(None)
    choice = choose_template(_Preset("m", "llama_3"), tok)
    assert choice.source == "builtin" and "ships no chat template" in choice.reason
    with pytest.raises(TemplateError, match="no chat_template"):
        from_chat_template(tok)


def test_prefix_unstable_template_is_reported():
    renderer = from_chat_template(_tokenizer(REVERSED))
    with pytest.raises(TemplateError, match="not prefix-stable"):
        renderer.render(TWO_TURNS)


def test_processor_chat_template_uses_processor_image_token(synthworld_tokenizer):
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from trainer.foundation.tokenizer import VICUNA_V1_CHAT_TEMPLATE

    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(),
        tokenizer=synthworld_tokenizer,
        chat_template=VICUNA_V1_CHAT_TEMPLATE,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    choice = choose_template(_Preset("proc", "vicuna_v1"), processor)
    assert choice.source == "checkpoint"
    assert choice.renderer.image_token == processor.image_token == "<image>"
    prompt = choice.renderer.render(TWO_IMAGES)
    assert prompt.text == render(TWO_IMAGES, "vicuna_v1").text
    assert prompt.stop_strings == ("</s>",)


def test_conversation_turn_rules():
    with pytest.raises(ConversationError, match="expected role 'assistant'"):
        SINGLE.with_user("again")
    with pytest.raises(ConversationError, match="expected role 'user'"):
        Conversation().with_assistant("hi")
    from vision_common.chat.conversation import Message

    with pytest.raises(ConversationError, match="only user messages may carry images"):
        Message("assistant", "x", ("img",))
    with pytest.raises(ConversationError, match="only be the first"):
        Conversation((Message("user", "q"), Message("system", "s")))


def test_conversation_helpers_keep_images_and_markers_in_step():
    conversation = (
        Conversation()
        .with_system("S")
        .with_user("q1", ["a"])
        .with_assistant("r1")
        .with_user("q2", ["b", "c"])
        .with_assistant("r2")
        .with_user("q3")
    )
    assert conversation.images == ("a", "b", "c")
    trimmed = conversation.drop_oldest_exchanges(1)
    assert trimmed.system == "S" and trimmed.images == ("b", "c")
    assert [m.text for m in trimmed.turns] == ["q2", "r2", "q3"]
    assert (
        render(trimmed, "vicuna_v1").text
        == "S USER: <image>\n<image>\nq2 ASSISTANT: r2</s>USER: q3 ASSISTANT:"
    )
    assert conversation.drop_oldest_exchanges(5) == Conversation().with_system("S")
    assert conversation.drop_oldest_exchanges(0) == conversation
    answered = conversation.with_assistant("partial").with_last_answer("partial answer")
    assert answered.messages[-1].text == "partial answer"
    assert answered.without_last_answer() == conversation
    assert conversation.with_system("T").system == "T" and conversation.without_system().system is None


def test_from_llava_turns_moves_markers_into_images():
    from vision_common.chat.conversation import from_llava_turns, split_image_markers

    assert split_image_markers("<image>\nWhat is it?") == ("What is it?", 1)
    assert split_image_markers("What is it?\n<image>") == ("What is it?", 1)
    turns = [
        {"from": "human", "value": "<image>\nWhat shape?"},
        {"from": "gpt", "value": "A star."},
        {"from": "human", "value": "<image>\n<image>\nAnd these?"},
        {"from": "gpt", "value": "Two rings."},
    ]
    conversation = from_llava_turns(turns, ["p1.png", "p2.png", "p3.png"])
    assert [m.images for m in conversation.turns] == [("p1.png",), (), ("p2.png", "p3.png"), ()]
    assert render(conversation, "vicuna_v1", add_generation_prompt=False).text == (
        f"{SYS_VICUNA} USER: <image>\nWhat shape? ASSISTANT: A star.</s>USER: <image>\n<image>\nAnd these? "
        "ASSISTANT: Two rings.</s>"
    )
    with pytest.raises(ConversationError, match="rec-7: 1 image.s. given but only 0"):
        from_llava_turns(turns[1:2] and [{"from": "human", "value": "hi"}], ["x"], where="rec-7")
    with pytest.raises(ConversationError, match="rec-8: .*more <image> markers"):
        from_llava_turns(turns, ["only-one"], where="rec-8")
    with pytest.raises(ConversationError, match=r"rec-9: conversations\[0\].from"):
        from_llava_turns([{"from": "bot", "value": "x"}], where="rec-9")
