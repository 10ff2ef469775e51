"""The conversation data model: who said what, and which images came with each user turn.

A conversation is an immutable value. Every helper returns a new ``Conversation`` so the UI, the backends and
the trainer can share one without defensive copies. Images are opaque handles (a path, a PIL image, a data
URL, ...): nothing here opens them, the template renderer only counts them, and ``Conversation.images`` lists
them in the order their placeholders appear in the rendered prompt, which is the order a processor needs.

Unlike the original LLaVA demo (one image per chat, a new image resets it; llava.md §2), any user turn may
carry one or more images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")
# An image handle: a path, a PIL image, a data URL, ... Only the backend that feeds pixels ever opens it.
ImageRef: TypeAlias = Any
DEFAULT_IMAGE_TOKEN = "<image>"
# LLaVA conversation JSON speaker names (llava.md §5 data format).
LLAVA_SPEAKERS: Mapping[str, Role] = {"system": "system", "human": "user", "gpt": "assistant"}


class ConversationError(ValueError):
    """A conversation breaks the turn rules; the message says which message and why."""


@dataclass(frozen=True)
class Message:
    """One turn. Only user turns carry images; their placeholders are placed by the template, not the text."""

    role: Role
    text: str
    images: tuple[ImageRef, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConversationError(f"message role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.text, str):
            raise ConversationError(f"{self.role} message text must be a str, got {type(self.text).__name__}")
        if not isinstance(self.images, tuple):
            # Accept any sequence for convenience but store a tuple so the message stays immutable.
            object.__setattr__(self, "images", tuple(self.images))
        if self.images and self.role != "user":
            raise ConversationError(
                f"only user messages may carry images, got {len(self.images)} on {self.role}"
            )


def _check_turn_order(messages: Sequence[Message]) -> None:
    """System (optional, first only), then user and assistant strictly alternating, starting with user."""
    expected: Role = "user"
    for index, message in enumerate(messages):
        if message.role == "system":
            if index != 0:
                raise ConversationError(f"message {index}: a system message may only be the first message")
            continue
        if message.role != expected:
            raise ConversationError(
                f"message {index}: expected role {expected!r} (turns alternate user/assistant, starting "
                f"with user), got {message.role!r}"
            )
        expected = "assistant" if expected == "user" else "user"


@dataclass(frozen=True)
class Conversation:
    """An optional system message followed by alternating user/assistant messages."""

    messages: tuple[Message, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(self.messages))
        for index, message in enumerate(self.messages):
            if not isinstance(message, Message):
                raise ConversationError(f"message {index} must be a Message, got {type(message).__name__}")
        _check_turn_order(self.messages)

    # -- views -------------------------------------------------------------------------------------------
    @property
    def system(self) -> str | None:
        """The system text, or None when the template's default system prompt applies."""
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].text
        return None

    @property
    def turns(self) -> tuple[Message, ...]:
        """The user and assistant messages, without the system message."""
        return self.messages[1:] if self.system is not None else self.messages

    @property
    def images(self) -> tuple[ImageRef, ...]:
        """Every image, in the order its placeholder appears in the rendered prompt."""
        return tuple(image for message in self.messages for image in message.images)

    @property
    def last_role(self) -> Role | None:
        return self.messages[-1].role if self.messages else None

    # -- builders (each returns a new conversation) ------------------------------------------------------
    def with_system(self, text: str) -> Conversation:
        """Set or replace the system message; ``""`` means "no system prompt at all"."""
        return Conversation((Message("system", text), *self.turns))

    def without_system(self) -> Conversation:
        """Drop the system message so the template's default system prompt applies again."""
        return Conversation(self.turns)

    def with_user(self, text: str, images: Iterable[ImageRef] = ()) -> Conversation:
        return Conversation((*self.messages, Message("user", text, tuple(images))))

    def with_assistant(self, text: str) -> Conversation:
        return Conversation((*self.messages, Message("assistant", text)))

    def without_last_answer(self) -> Conversation:
        """Remove the final assistant message (what "Regenerate" needs); an error if there is none."""
        if self.last_role != "assistant":
            raise ConversationError("the conversation does not end with an assistant message")
        return Conversation(self.messages[:-1])

    def with_last_answer(self, text: str) -> Conversation:
        """Replace the final assistant message's text (streaming updates it in place)."""
        if self.last_role != "assistant":
            raise ConversationError("the conversation does not end with an assistant message")
        return Conversation((*self.messages[:-1], replace(self.messages[-1], text=text)))

    def drop_oldest_exchanges(self, count: int = 1) -> Conversation:
        """Drop the ``count`` oldest user turns together with their answers; the system message stays.

        Dropped turns take their images with them, so ``images`` always matches the placeholders that the
        template renders (a processor raises when the two counts differ).
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        turns = self.turns
        user_positions = [i for i, message in enumerate(turns) if message.role == "user"]
        cut = user_positions[count] if count < len(user_positions) else len(turns)
        head = self.messages[:1] if self.system is not None else ()
        return Conversation((*head, *turns[cut:]))


def split_image_markers(text: str, image_token: str = DEFAULT_IMAGE_TOKEN) -> tuple[str, int]:
    """Remove ``image_token`` markers (and a newline right after each) from ``text``; return (text, count).

    LLaVA data writes "<image>\\n" into the human text; the model here keeps images beside the text and lets
    the template place the markers, so data has to be converted once on the way in.
    """
    count = text.count(image_token)
    if count == 0:
        return text, 0
    cleaned = text.replace(image_token + "\n", "").replace(image_token, "")
    # LLaVA strips the remaining text after removing the marker (conversation.py get_prompt).
    return cleaned.strip(), count


def from_llava_turns(
    turns: Sequence[Mapping[str, Any]],
    images: Sequence[ImageRef] = (),
    *,
    image_token: str = DEFAULT_IMAGE_TOKEN,
    where: str = "record",
) -> Conversation:
    """Build a conversation from LLaVA JSON ``[{"from": "human"|"gpt"|"system", "value": ...}, ...]``.

    Each human turn gets as many of ``images`` (in order) as it has ``image_token`` markers. ``where`` names
    the record (file and id) in error messages.
    """
    messages: list[Message] = []
    remaining = list(images)
    for position, turn in enumerate(turns):
        speaker, value = turn.get("from"), turn.get("value")
        if speaker not in LLAVA_SPEAKERS:
            raise ConversationError(
                f"{where}: conversations[{position}].from must be one of {sorted(LLAVA_SPEAKERS)}, "
                f"got {speaker!r}"
            )
        if not isinstance(value, str):
            raise ConversationError(f"{where}: conversations[{position}].value must be a string")
        text, count = split_image_markers(value, image_token)
        if count and speaker != "human":
            raise ConversationError(
                f"{where}: conversations[{position}] has {image_token} outside a human turn"
            )
        if count > len(remaining):
            raise ConversationError(
                f"{where}: the turns hold more {image_token} markers than the {len(images)} image(s) given"
            )
        messages.append(Message(LLAVA_SPEAKERS[speaker], text, tuple(remaining[:count])))
        remaining = remaining[count:]
    if remaining:
        raise ConversationError(
            f"{where}: {len(images)} image(s) given but only {len(images) - len(remaining)} {image_token} "
            "marker(s) in the turns"
        )
    try:
        return Conversation(tuple(messages))
    except ConversationError as exc:
        raise ConversationError(f"{where}: {exc}") from exc


ContentFormat = Literal["parts", "user_parts", "string"]
CONTENT_FORMATS: tuple[ContentFormat, ...] = ("parts", "user_parts", "string")


def to_chat_messages(
    conversation: Conversation, *, content_format: ContentFormat = "parts"
) -> list[dict[str, Any]]:
    """The transformers ``apply_chat_template`` view of a conversation.

    ``"parts"``: every content is a list of ``{"type": "image"}`` parts (one per image, in order) followed by
    one ``{"type": "text", "text": ...}`` part, the format llava-hf processors expect. ``"user_parts"``: only
    user contents are part lists; system and assistant contents are strings (the OpenAI / SGLang rule).
    ``"string"``: plain strings for text-only templates; a conversation with images is rejected there because
    such templates would silently drop them.
    """
    if content_format not in CONTENT_FORMATS:
        raise ValueError(f"content_format must be one of {CONTENT_FORMATS}, got {content_format!r}")
    chat: list[dict[str, Any]] = []
    for message in conversation.messages:
        as_parts = content_format == "parts" or (content_format == "user_parts" and message.role == "user")
        if not as_parts:
            if message.images:
                raise ConversationError(f"content_format={content_format!r} cannot carry images on this turn")
            chat.append({"role": message.role, "content": message.text})
            continue
        parts: list[dict[str, Any]] = [{"type": "image"} for _ in message.images]
        parts.append({"type": "text", "text": message.text})
        chat.append({"role": message.role, "content": parts})
    return chat
