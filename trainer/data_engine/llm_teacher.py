"""The LLM teacher: the symbolic context goes to an OpenAI-compatible chat endpoint, the reply is validated.

A reply that cannot be parsed (bad format, refusal, truncated, empty) is counted as a :class:`DroppedReply`
and skipped; only an endpoint that refuses requests (4xx) or stays down after every retry stops the run.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.data_engine.instructions import DETAIL_INSTRUCTIONS, pick_instruction
from trainer.data_engine.llm_client import ChatClient, ChatReply, LLMClientConfig
from trainer.data_engine.llm_parse import MalformedReply, parse_complex, parse_conversation, parse_detail
from trainer.data_engine.llm_prompts import build_messages
from trainer.data_engine.symbolic import symbolic_context
from trainer.data_engine.teachers import (
    Conversation,
    DroppedReply,
    ResponseType,
    TeacherContext,
    TeacherOutput,
    Turn,
)


def conversation_from_reply(kind: ResponseType, reply: ChatReply, detail_instruction: str) -> Conversation:
    """Turn one chat reply into a conversation of ``kind``; raise :class:`MalformedReply` if unusable."""
    if reply.error:
        raise MalformedReply(reply.error)
    if reply.finish_reason == "length":
        raise MalformedReply("reply was cut off at max_tokens")
    text = reply.text or ""
    if kind is ResponseType.CONVERSATION:
        return Conversation(kind, tuple(parse_conversation(text)))
    if kind is ResponseType.COMPLEX:
        return Conversation(kind, (parse_complex(text),))
    return Conversation(kind, (Turn(detail_instruction, parse_detail(text)),))


class LLMTeacher:
    """Implements :class:`~trainer.data_engine.teachers.Teacher`; safe to call from several threads."""

    name = "llm"

    def __init__(self, config: LLMClientConfig, *, client: ChatClient | None = None) -> None:
        self.config = config
        self._client = client or ChatClient(config)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LLMTeacher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def generate(self, context: TeacherContext, kinds: Sequence[ResponseType]) -> TeacherOutput:
        context_text = symbolic_context(context)
        conversations: list[Conversation] = []
        dropped: list[DroppedReply] = []
        for kind in kinds:
            # The human-side detail instruction is sampled locally, as LLaVA does; the teacher writes the answer.
            instruction = pick_instruction(DETAIL_INSTRUCTIONS, context.rng(kind))
            reply = self._client.complete(build_messages(kind, context_text))
            try:
                conversations.append(conversation_from_reply(kind, reply, instruction))
            except MalformedReply as exc:
                dropped.append(DroppedReply(kind, str(exc)))
        return TeacherOutput(tuple(conversations), tuple(dropped))
