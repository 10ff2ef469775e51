"""Conversation templates as data, one renderer, and the checkpoint's own Jinja template as an alternative.

Each LLaVA template (llava.md §4) is a ``ChatTemplate`` value: default system text plus the literal strings
that wrap the system block, user turns, assistant turns and the generation prompt. ``render`` is the only
code that turns a ``Conversation`` into a prompt, for every template, so there are no per-template copies
like LLaVA's five ``preprocess_*`` functions (style.md §3).

The result is a ``RenderedPrompt``: the text, plus ``segments`` that tile the text exactly and mark what a
trainer supervises (assistant answers and their end-of-turn separator, as LLaVA's ``preprocess_v1`` does),
plus the template's stop strings and the images in placeholder order.

Where a checkpoint ships a Jinja chat template, ``from_chat_template`` renders through its
``apply_chat_template`` instead and ``choose_template`` applies that preference; both live in
``vision_common.chat.checkpoint_templates``, which builds on this module (docs/templates.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, Protocol

from vision_common.chat.conversation import DEFAULT_IMAGE_TOKEN, Conversation, ImageRef, Role


class TemplateError(ValueError):
    """A conversation cannot be rendered with a template; the message names the template and the message."""


class UnknownTemplateError(LookupError):
    """A template name is not registered; the message lists the valid names."""


@dataclass(frozen=True)
class ChatTemplate:
    """A conversation layout as plain strings; ``render`` interprets every field the same way.

    A user turn renders as ``user_prefix + images + text + user_suffix`` where each image becomes
    ``image_prefix + image_token + image_suffix`` at the front of the text (LLaVA moves ``<image>`` there).
    An assistant turn renders as ``assistant_prefix + answer + assistant_suffix``; only ``answer +
    assistant_suffix`` is trainable. An empty system text renders no system block at all.
    """

    name: str
    system: str = ""
    system_prefix: str = ""
    system_suffix: str = ""
    # "prefix": the system block starts the prompt; "first_user": it goes inside the first user turn,
    # after that turn's prefix (Llama-2 / Mistral ``[INST] <<SYS>>...``).
    system_placement: Literal["prefix", "first_user"] = "prefix"
    accepts_system: bool = True
    user_prefix: str = ""
    # Llama-2 style writes "<s>" before every [INST] except the first one; None means "same as user_prefix".
    first_user_prefix: str | None = None
    user_suffix: str = ""
    image_prefix: str = ""
    image_suffix: str = "\n"
    # "drop": the user text is replaced by the image markers alone (``plain``, LLaVA stage 1).
    user_text: Literal["keep", "drop"] = "keep"
    assistant_prefix: str = ""
    assistant_suffix: str = ""
    generation_prompt: str = ""
    # Llama-3's chat template trims every message; the LLaVA templates keep text verbatim.
    strip_text: bool = False
    stop_strings: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("template name must not be empty")
        if self.system_placement not in ("prefix", "first_user"):
            raise ValueError(f"template {self.name}: system_placement must be 'prefix' or 'first_user'")
        if self.user_text not in ("keep", "drop"):
            raise ValueError(f"template {self.name}: user_text must be 'keep' or 'drop'")
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ValueError(
                f"template {self.name}: stop_strings must be a non-empty tuple of non-empty strings"
            )
        if self.system and not self.accepts_system:
            raise ValueError(f"template {self.name}: has a default system text but accepts_system=False")

    def render(
        self,
        conversation: Conversation,
        *,
        add_generation_prompt: bool = True,
        image_token: str = DEFAULT_IMAGE_TOKEN,
    ) -> RenderedPrompt:
        return render(
            conversation, self, add_generation_prompt=add_generation_prompt, image_token=image_token
        )


@dataclass(frozen=True)
class Segment:
    """A piece of the prompt; ``message_index`` points into ``Conversation.messages`` (None: the prompt)."""

    text: str
    role: Role
    trainable: bool
    message_index: int | None


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt whose segments concatenate to exactly ``text``."""

    text: str
    segments: tuple[Segment, ...]
    stop_strings: tuple[str, ...]
    images: tuple[ImageRef, ...]
    template: str

    def __post_init__(self) -> None:
        joined = "".join(segment.text for segment in self.segments)
        if joined != self.text:
            raise TemplateError(f"template {self.template}: segments do not tile the prompt text")

    def trainable_spans(self) -> list[tuple[int, int]]:
        """Character ``[start, end)`` ranges of the supervised text, for offset-mapped label masks."""
        spans: list[tuple[int, int]] = []
        offset = 0
        for segment in self.segments:
            end = offset + len(segment.text)
            if segment.trainable:
                spans.append((offset, end))
            offset = end
        return spans


class PromptRenderer(Protocol):
    """What backends and the trainer need: a builtin ``ChatTemplate`` or a checkpoint's Jinja template."""

    @property
    def name(self) -> str: ...

    def render(self, conversation: Conversation, *, add_generation_prompt: bool = True) -> RenderedPrompt: ...


def append_segment(
    segments: list[Segment], text: str, role: Role, trainable: bool, index: int | None
) -> None:
    """Append, skipping empty text and merging with the previous segment when it has the same labels."""
    if not text:
        return
    if segments:
        last = segments[-1]
        if (last.role, last.trainable, last.message_index) == (role, trainable, index):
            segments[-1] = replace(last, text=last.text + text)
            return
    segments.append(Segment(text, role, trainable, index))


def render(
    conversation: Conversation,
    template: ChatTemplate | str,
    *,
    add_generation_prompt: bool = True,
    image_token: str = DEFAULT_IMAGE_TOKEN,
) -> RenderedPrompt:
    """Render ``conversation`` with a builtin template (an instance or a registered name).

    ``add_generation_prompt`` appends the assistant cue and requires the conversation to end with a user
    turn; render a finished conversation (training) with ``add_generation_prompt=False``.
    """
    tpl = template if isinstance(template, ChatTemplate) else get_template(template)
    if not image_token:
        raise TemplateError(f"template {tpl.name}: image_token must not be empty")
    system = tpl.system if conversation.system is None else conversation.system
    if conversation.system and not tpl.accepts_system:
        raise TemplateError(f"template {tpl.name} has no system prompt; remove the system message")
    if tpl.strip_text:
        system = system.strip()
    system_block = tpl.system_prefix + system + tpl.system_suffix if system else ""
    system_index = 0 if conversation.system is not None else None

    segments: list[Segment] = []
    if tpl.system_placement == "prefix":
        append_segment(segments, system_block, "system", False, system_index)
    seen_user = False
    for index, message in enumerate(conversation.messages):
        text = message.text.strip() if tpl.strip_text else message.text
        if message.role == "system":
            continue
        if image_token in text:
            raise TemplateError(
                f"template {tpl.name}: message {index} contains the image token {image_token!r} in its text; "
                "pass images through Message.images (see conversation.split_image_markers)"
            )
        if message.role == "assistant":
            append_segment(segments, tpl.assistant_prefix, "assistant", False, index)
            append_segment(segments, text + tpl.assistant_suffix, "assistant", True, index)
            continue
        if tpl.user_text == "drop" and not message.images:
            raise TemplateError(
                f"template {tpl.name}: message {index} has no image, but this template renders a user turn "
                "as its image markers only"
            )
        prefix = tpl.user_prefix if seen_user or tpl.first_user_prefix is None else tpl.first_user_prefix
        markers = (tpl.image_prefix + image_token + tpl.image_suffix) * len(message.images)
        body = markers + (text if tpl.user_text == "keep" else "")
        append_segment(segments, prefix, "user", False, index)
        if not seen_user and tpl.system_placement == "first_user":
            append_segment(segments, system_block, "system", False, system_index)
        append_segment(segments, body + tpl.user_suffix, "user", False, index)
        seen_user = True

    if add_generation_prompt:
        if conversation.last_role != "user":
            raise TemplateError(
                f"template {tpl.name}: add_generation_prompt=True needs a conversation that ends with a user "
                f"message (it ends with {conversation.last_role or 'nothing'}); pass add_generation_prompt=False "
                "to render a finished conversation"
            )
        append_segment(segments, tpl.generation_prompt, "assistant", False, None)
    return RenderedPrompt(
        text="".join(s.text for s in segments),
        segments=tuple(segments),
        stop_strings=tpl.stop_strings,
        images=conversation.images,
        template=tpl.name,
    )


# -- the registry (immutable data) -------------------------------------------------------------------------

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
LLAVA_LLAMA_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)

# SeparatorStyle.TWO, sep " ", sep2 "</s>": "SYS USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:".
_VICUNA_V1 = ChatTemplate(
    name="vicuna_v1",
    system=VICUNA_SYSTEM,
    system_suffix=" ",
    user_prefix="USER: ",
    user_suffix=" ",
    assistant_prefix="ASSISTANT: ",
    assistant_suffix="</s>",
    generation_prompt="ASSISTANT:",
    stop_strings=("</s>",),
    description="LLaVA-1.5/1.6 Vicuna training template (--version v1); SGLang's vicuna_v1.1 renders the same",
)
# SeparatorStyle.LLAMA_2 with sep "" and an empty system: "[INST] <image>\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]".
_MISTRAL_INSTRUCT = ChatTemplate(
    name="mistral_instruct",
    system_prefix="<<SYS>>\n",
    system_suffix="\n<</SYS>>\n\n",
    system_placement="first_user",
    user_prefix="[INST] ",
    user_suffix=" [/INST]",
    assistant_prefix=" ",
    assistant_suffix=" </s>",
    stop_strings=("</s>",),
    description="LLaVA-1.6 Mistral; a system override is wrapped in <<SYS>> inside the first [INST]",
)
_TEMPLATES: tuple[ChatTemplate, ...] = (
    _VICUNA_V1,
    replace(
        _VICUNA_V1,
        name="llava_v1",
        system=LLAVA_V1_SYSTEM,
        description="vicuna_v1 with 'human' wording: the LLaVA web demo's choice and llava-hf's documented prompt",
    ),
    _MISTRAL_INSTRUCT,
    # LLAMA_2 with sep "<s>": LLaVA lstrips the sep, so only later [INST] blocks get "<s>".
    replace(
        _MISTRAL_INSTRUCT,
        name="llava_llama_2",
        system=LLAVA_LLAMA_SYSTEM,
        user_prefix="<s>[INST] ",
        first_user_prefix="[INST] ",
        description="LLaVA on Llama-2-chat",
    ),
    # SeparatorStyle.MPT, sep <|im_end|>, no newline after it (SGLang's chatml-llava adds one).
    ChatTemplate(
        name="chatml_direct",
        system="Answer the questions.",
        system_prefix="<|im_start|>system\n",
        system_suffix="<|im_end|>",
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_suffix="<|im_end|>",
        generation_prompt="<|im_start|>assistant\n",
        stop_strings=("<|im_end|>",),
        description="LLaVA-1.6 34B (Nous-Hermes-2-Yi); ChatML without newlines between turns",
    ),
    # LLaVA-NeXT's llava_llama_3 renders through Meta's template, which trims every message; SGLang's
    # llava_llama_3 writes the same headers and strips too. BOS is left to the tokenizer.
    ChatTemplate(
        name="llama_3",
        system=LLAVA_LLAMA_SYSTEM,
        system_prefix="<|start_header_id|>system<|end_header_id|>\n\n",
        system_suffix="<|eot_id|>",
        user_prefix="<|start_header_id|>user<|end_header_id|>\n\n",
        user_suffix="<|eot_id|>",
        assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant_suffix="<|eot_id|>",
        generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n",
        strip_text=True,
        stop_strings=("<|eot_id|>", "<|end_of_text|>"),
        description="LLaVA-NeXT llava_llama_3 (lmms-lab/llama3-llava-next-8b)",
    ),
    # Stage-1 pretraining (preprocess_plain): "<image>CAPTION\n"; the caption and its "\n" are supervised.
    ChatTemplate(
        name="plain",
        accepts_system=False,
        image_suffix="",
        user_text="drop",
        assistant_suffix="\n",
        stop_strings=("\n",),
        description="LLaVA stage-1 captioning: the user text is replaced by the image marker",
    ),
)
TEMPLATES: Mapping[str, ChatTemplate] = MappingProxyType({t.name: t for t in _TEMPLATES})
ALIASES: Mapping[str, str] = MappingProxyType({"v1": "vicuna_v1", "llava_llama_3": "llama_3"})


def template_names() -> list[str]:
    """Every accepted name: templates and aliases, sorted."""
    return sorted([*TEMPLATES, *ALIASES])


def get_template(name: str) -> ChatTemplate:
    """The registered template called ``name`` (aliases allowed), or ``UnknownTemplateError``."""
    canonical = ALIASES.get(name, name)
    if canonical not in TEMPLATES:
        raise UnknownTemplateError(f"unknown template {name!r}; valid names: {', '.join(template_names())}")
    return TEMPLATES[canonical]
