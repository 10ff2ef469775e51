"""The checkpoint's own Jinja chat template as a prompt renderer, and the policy that picks a renderer.

Where a checkpoint ships a chat template (``chat_template.jinja`` / ``chat_template.json``), it is the
authority on its prompt format, so ``choose_template`` prefers it over the preset's builtin template
(``vision_common.chat.templates``) unless it drops images or cannot render. Both produce the same
``RenderedPrompt`` so backends and the trainer do not care which one they got (docs/templates.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from vision_common.chat.conversation import (
    DEFAULT_IMAGE_TOKEN,
    ContentFormat,
    Conversation,
    to_chat_messages,
)
from vision_common.chat.templates import (
    ChatTemplate,
    RenderedPrompt,
    Segment,
    TemplateError,
    append_segment,
    get_template,
    template_names,
)


def has_chat_template(tokenizer_or_processor: Any) -> bool:
    """True when the tokenizer or processor ships a non-empty Jinja chat template."""
    template = getattr(tokenizer_or_processor, "chat_template", None)
    return bool(template)


def _eos_strings(owner: Any) -> tuple[str, ...]:
    tokenizer = getattr(owner, "tokenizer", owner)
    eos = getattr(tokenizer, "eos_token", None)
    return (eos,) if isinstance(eos, str) and eos else ()


@dataclass(frozen=True, eq=False)
class CheckpointChatTemplate:
    """Renders through a tokenizer's or processor's ``apply_chat_template`` (transformers content parts).

    Segments come from rendering growing prefixes of the conversation and taking the differences; that
    needs a prefix-stable template (true for the LLaVA, ChatML and Llama-3 ones), otherwise
    ``TemplateError`` says so and the builtin template is the way to train.
    """

    owner: Any
    name: str
    image_token: str = DEFAULT_IMAGE_TOKEN
    stop_strings: tuple[str, ...] = ()
    content_format: ContentFormat = "parts"

    def _apply(self, messages: list[dict[str, Any]], generation: bool) -> str:
        if not messages:
            return ""
        try:
            text = self.owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        except Exception as exc:  # Jinja raises its own classes; name the checkpoint and the cause.
            raise TemplateError(f"chat template of {self.name} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise TemplateError(f"chat template of {self.name} returned {type(text).__name__}, expected str")
        return text

    def _new_text(self, previous: str, full: str, where: str) -> str:
        if not full.startswith(previous):
            raise TemplateError(
                f"chat template of {self.name} is not prefix-stable at {where}, so segments cannot be "
                "located; use a builtin template"
            )
        return full[len(previous) :]

    def _answer_start(
        self, before: list[dict[str, Any]], previous: str, turn: str, answer: str, index: int
    ) -> int:
        """Where the supervised part of an assistant turn starts: at the answer text, after the header.

        The header is what the generation prompt adds (when that is a prefix of the turn); searching for the
        answer from there keeps a header space such as "ASSISTANT: " out of the labels.
        """
        header = self._apply(before, True)
        start = (
            len(header) - len(previous)
            if header.startswith(previous) and turn.startswith(header[len(previous) :])
            else 0
        )
        answer = answer.strip()
        if not answer:
            return start
        found = turn.find(answer, start)
        if found < 0:
            raise TemplateError(
                f"chat template of {self.name} does not write message {index}'s answer verbatim"
            )
        return found

    def render(self, conversation: Conversation, *, add_generation_prompt: bool = True) -> RenderedPrompt:
        if add_generation_prompt and conversation.last_role != "user":
            raise TemplateError(
                f"chat template of {self.name}: add_generation_prompt=True needs a conversation that ends "
                "with a user message"
            )
        messages = to_chat_messages(conversation, content_format=self.content_format)
        segments: list[Segment] = []
        previous = ""
        for index, message in enumerate(conversation.messages):
            full = self._apply(messages[: index + 1], False)
            turn = self._new_text(previous, full, f"message {index}")
            if message.role == "assistant":
                split = self._answer_start(messages[:index], previous, turn, message.text, index)
                append_segment(segments, turn[:split], "assistant", False, index)
                append_segment(segments, turn[split:], "assistant", True, index)
            else:
                append_segment(segments, turn, message.role, False, index)
            previous = full
        if add_generation_prompt:
            full = self._apply(messages, True)
            append_segment(
                segments, self._new_text(previous, full, "the generation prompt"), "assistant", False, None
            )
            previous = full
        prompt = RenderedPrompt(
            text=previous,
            segments=tuple(segments),
            stop_strings=self.stop_strings,
            images=conversation.images,
            template=self.name,
        )
        found, expected = prompt.text.count(self.image_token), len(conversation.images)
        if found != expected:
            raise TemplateError(
                f"chat template of {self.name} wrote {found} {self.image_token!r} marker(s) for {expected} "
                "image(s); text-only templates drop images, so pick a builtin template"
            )
        return prompt


def from_chat_template(
    tokenizer_or_processor: Any,
    *,
    name: str | None = None,
    content_format: ContentFormat = "parts",
) -> CheckpointChatTemplate:
    """A renderer that uses the checkpoint's own Jinja chat template."""
    if not has_chat_template(tokenizer_or_processor):
        raise TemplateError(f"{type(tokenizer_or_processor).__name__} has no chat_template")
    label = (
        name or getattr(tokenizer_or_processor, "name_or_path", "") or type(tokenizer_or_processor).__name__
    )
    token = getattr(tokenizer_or_processor, "image_token", None)
    return CheckpointChatTemplate(
        owner=tokenizer_or_processor,
        name=f"checkpoint:{label}",
        image_token=token if isinstance(token, str) and token else DEFAULT_IMAGE_TOKEN,
        stop_strings=_eos_strings(tokenizer_or_processor),
        content_format=content_format,
    )


# A probe that exercises what chat needs: a system override, images in two turns and a finished answer.
_PROBE = (
    Conversation()
    .with_system("Probe system.")
    .with_user("Probe question one.", images=("probe-image",))
    .with_assistant("Probe answer.")
    .with_user("Probe question two.", images=("probe-image",))
)
# llava-hf templates iterate content parts for every role; OpenAI-style ones want strings for system and
# assistant. The first format that renders the probe wins.
_PROBE_FORMATS: tuple[ContentFormat, ...] = ("parts", "user_parts")


class _HasTemplate(Protocol):
    name: str
    template: str | None


@dataclass(frozen=True)
class TemplateChoice:
    """The renderer to use and a one-line reason, for logs and the UI."""

    renderer: ChatTemplate | CheckpointChatTemplate
    source: Literal["checkpoint", "builtin"]
    reason: str


def choose_template(
    preset: _HasTemplate | None,
    tokenizer: Any = None,
    *,
    prefer: Literal["checkpoint", "builtin"] = "checkpoint",
) -> TemplateChoice:
    """Pick the renderer for a model: the checkpoint's Jinja template if it has one that keeps images
    (``prefer="checkpoint"``), otherwise the preset's builtin template.

    A checkpoint template is probed with a one-image conversation first; one that drops the image or fails
    falls back to the builtin template, or raises when the preset names none.
    """
    if prefer not in ("checkpoint", "builtin"):
        raise ValueError(f"prefer must be 'checkpoint' or 'builtin', got {prefer!r}")
    label = preset.name if preset is not None else "the model"
    builtin = get_template(preset.template) if preset is not None and preset.template else None
    if builtin is not None and prefer == "builtin":
        return TemplateChoice(builtin, "builtin", f"{label}: builtin {builtin.name} preferred")
    problem = "the tokenizer ships no chat template"
    if tokenizer is not None and has_chat_template(tokenizer):
        failures = []
        for content_format in _PROBE_FORMATS:
            renderer = from_chat_template(tokenizer, name=label, content_format=content_format)
            try:
                renderer.render(_PROBE)
            except TemplateError as exc:
                failures.append(f"{content_format}: {exc}")
                continue
            return TemplateChoice(
                renderer, "checkpoint", f"{label}: the checkpoint's chat template ({content_format} content)"
            )
        problem = "its chat template fails the probe conversation (" + "; ".join(failures) + ")"
    if builtin is None:
        raise TemplateError(
            f"{label}: {problem} and no builtin template is set; valid: {', '.join(template_names())}"
        )
    return TemplateChoice(builtin, "builtin", f"{label}: {problem}; using builtin {builtin.name}")
