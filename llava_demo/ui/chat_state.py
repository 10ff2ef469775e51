"""One session's chat as an immutable value, and the pure steps the chat tab takes on it.

``ChatState`` holds the ``Conversation`` the model sees (images are the paths Gradio stored the uploads at)
and, per answer, a short note for the reader ("stopped", "hit the length limit"; the backend's notices go to the
status line) that is shown under the answer but never sent to the model. Every function returns a new state; the tab keeps one in
a ``gr.State``, so sessions never share chat data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llava_demo.ui.decoded_uploads import DecodedUploads
from llava_demo.ui.generations import Outcome
from vision_common.chat.conversation import Conversation
from vision_common.chat.format_prompts import (
    JSON_OUTPUT,
    MULTIPLE_CHOICE,
    SHORT_ANSWER,
    VERIFY_QUESTION,
    YES_NO,
)
from vision_common.images.load import ImageInputError

# The dissertation's response-format prompts (LLaVA-1.5 Sec. 4), appended on a new line after the question.
FREE_FORM = "Free-form answer"
RESPONSE_FORMATS = MappingProxyType(
    {
        FREE_FORM: "",
        "Short answer (single word or phrase)": SHORT_ANSWER,
        "Multiple choice (option letter)": MULTIPLE_CHOICE,
        "Yes / no": YES_NO,
        "Verify the question first": VERIFY_QUESTION,
        "JSON object": JSON_OUTPUT,
    }
)
# Far beyond any question; a pasted book would only be cut by the context guard after a long prefill.
MAX_MESSAGE_CHARS = 8000
MAX_IMAGES_PER_MESSAGE = 8


class ChatInputError(ValueError):
    """The message cannot be sent as it is; ``str(err)`` says why, naming the file when a file is wrong."""


@dataclass(frozen=True)
class ChatState:
    conversation: Conversation = field(default_factory=Conversation)
    notes: tuple[str, ...] = ()
    """One per assistant message, in order: what the reader should know about that answer ("" for none)."""

    def __post_init__(self) -> None:
        answers = sum(1 for m in self.conversation.messages if m.role == "assistant")
        if len(self.notes) != answers:
            raise ValueError(
                f"ChatState needs one note per answer: {answers} answers, {len(self.notes)} notes"
            )

    @property
    def awaiting_answer(self) -> bool:
        return self.conversation.last_role == "user"

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(str(image) for image in self.conversation.images)


def compose_text(text: str, response_format: str | None) -> str:
    """The question plus the chosen response-format instruction (unknown names are an error)."""
    if response_format and response_format not in RESPONSE_FORMATS:
        raise ChatInputError(
            f"unknown response format {response_format!r}; choose one of {list(RESPONSE_FORMATS)}"
        )
    instruction = RESPONSE_FORMATS.get(response_format or FREE_FORM, "")
    text = text.strip()
    if not instruction:
        return text
    return f"{text}\n{instruction}" if text else instruction


def check_message(text: str | None, files: Sequence[str] | None, uploads: DecodedUploads) -> list[str]:
    """Validate a message before it joins the conversation; returns the image paths in order.

    Every image is decoded here, once, with the app's limits (size, pixels, format), so a bad file is refused
    with its name and reason before any model runs; the decoded image is kept in ``uploads`` for the model.
    """
    files = [str(f) for f in (files or []) if f]
    if not (text or "").strip() and not files:
        raise ChatInputError("the message is empty: write a question or attach an image")
    if text and len(text) > MAX_MESSAGE_CHARS:
        raise ChatInputError(f"the message has {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}")
    if len(files) > MAX_IMAGES_PER_MESSAGE:
        raise ChatInputError(f"{len(files)} files attached; at most {MAX_IMAGES_PER_MESSAGE} per message")
    for path in files:
        try:
            uploads.load(path)
        except ImageInputError as exc:
            hint = "; the app's upload limit is set with --max-upload-mb" if exc.code == "too_large" else ""
            raise ChatInputError(
                f"{Path(path).name} was not accepted: {exc.detail} [{exc.code}]{hint}"
            ) from exc
    return files


def add_question(state: ChatState, text: str, images: Sequence[str]) -> ChatState:
    if state.awaiting_answer:
        raise ChatInputError("the previous question is still waiting for its answer; wait or press Stop")
    return replace(state, conversation=state.conversation.with_user(text, tuple(images)))


def add_answer(state: ChatState, outcome: Outcome) -> ChatState:
    """Append the (possibly partial) answer of a finished generation with its note."""
    if not state.awaiting_answer:
        raise ValueError("add_answer: the conversation does not end with a question")
    return ChatState(state.conversation.with_assistant(outcome.text), (*state.notes, answer_note(outcome)))


def drop_question(state: ChatState) -> tuple[ChatState, str, list[str]]:
    """Remove an unanswered question (its answer failed); returns it so the input box can offer it again."""
    if not state.awaiting_answer:
        return state, "", []
    last = state.conversation.messages[-1]
    return (
        replace(state, conversation=_without_last(state.conversation)),
        last.text,
        [str(i) for i in last.images],
    )


def for_regenerate(state: ChatState) -> ChatState:
    """The state with its last answer removed, ready to answer the same question again."""
    if state.awaiting_answer:
        return state  # a failed answer: retry the question as it is
    if state.conversation.last_role != "assistant":
        raise ChatInputError("there is no answer to regenerate yet")
    return ChatState(state.conversation.without_last_answer(), state.notes[:-1])


def undo(state: ChatState) -> tuple[ChatState, str, list[str]]:
    """Remove the last question and its answer; returns the question's text and images for editing."""
    if not state.conversation.turns:
        raise ChatInputError("nothing to undo")
    if state.awaiting_answer:
        return drop_question(state)
    without_answer = ChatState(state.conversation.without_last_answer(), state.notes[:-1])
    return drop_question(without_answer)


def _without_last(conversation: Conversation) -> Conversation:
    return Conversation(conversation.messages[:-1])


def answer_note(outcome: Outcome) -> str:
    """What the reader should know about the answer itself, under it ("" when nothing): stopped or cut.

    The backend's notices (context fitting, image handling) are about the request, not the answer: they go to
    the status line (``outcome_status``); in the bubble they read as if the model had said them (issue 19)."""
    parts = []
    tokens = token_count(outcome)
    if outcome.finish_reason == "cancelled":
        parts.append(f"stopped after {tokens}")
    elif outcome.finish_reason == "length":
        parts.append(f"cut at the max-new-tokens limit ({tokens})")
    return "; ".join(parts)


def token_count(outcome: Outcome) -> str:
    """ "1 token", "12 tokens", or "? tokens" when the backend sent no usage."""
    if outcome.usage is None:
        return "? tokens"
    n = outcome.usage.completion_tokens
    return f"{n} token" if n == 1 else f"{n} tokens"


def outcome_status(outcome: Outcome) -> str:
    """The status line under the chat for a finished generation (Markdown)."""
    if outcome.error is not None:
        return f"**Error** ({outcome.error_code}): {outcome.error}"
    usage = outcome.usage
    tokens = token_count(outcome)
    image_tokens = (
        f", {usage.image_tokens:,} image tokens in the prompt" if usage and usage.image_tokens else ""
    )
    timing = f"{outcome.seconds:.1f} s"
    if outcome.first_token_s is not None:
        timing += f", first token after {outcome.first_token_s:.2f} s"
    notes = "".join(f" Note: {notice}." for notice in outcome.notices)
    if outcome.cancelled:
        return (
            f"**Stopped.** The backend ended the answer with finish_reason `cancelled` after {tokens} "
            f"({timing}).{notes}"
        )
    return f"Answered: finish_reason `{outcome.finish_reason}`, {tokens}{image_tokens} ({timing}).{notes}"


def chatbot_messages(state: ChatState, partial: str | None = None) -> list[dict[str, Any]]:
    """The ``gr.Chatbot`` value: each question's images then its text; each answer with its note.

    ``partial`` is an answer being written (shown after the last question with a cursor).
    """
    messages: list[dict[str, Any]] = []
    answers = iter(state.notes)
    for message in state.conversation.turns:
        if message.role == "user":
            content: list[dict[str, Any]] = [{"path": str(image)} for image in message.images]
            if message.text:
                content.append({"type": "text", "text": message.text})
            messages.append({"role": "user", "content": content})
        else:
            note = next(answers)
            text = message.text or (
                "(stopped before any text)" if note.startswith("stopped") else "(no text)"
            )
            if note:
                text = f"{text}\n\n*[{note}]*"
            messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    if partial is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": partial + " ▌"}]})
    return messages
