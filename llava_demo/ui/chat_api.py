"""Named API endpoints of the chat tab, for ``gradio_client``:

* ``/chat`` (text, images, temperature, top_p, max_new_tokens, response_format, model, template) streams the
  answer and returns ``(answer, info)``; the conversation continues across calls of one ``Client`` (its
  session), images included.
* ``/stop`` cancels that session's answer; ``/new_conversation`` starts over.

Bad input (an empty message, a file that is not an image, a corrupt or oversized image, an unknown model)
raises ``gr.Error`` with the same message the UI shows, so the client gets an ``AppError`` naming the cause and
the app keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import gradio as gr

from llava_demo.ui import chat_state as cs
from llava_demo.ui.backend_pool import ModelUnavailableError
from llava_demo.ui.chat_handlers import ChatHandlers, outcome_info, sampling_params, template_or_none
from llava_demo.ui.chat_services import session_id
from llava_demo.ui.chat_state import ChatInputError, ChatState
from llava_demo.ui.generations import Outcome, SessionBusyError


def _paths(files: Sequence[Any] | None) -> list[str]:
    """gr.File(type="filepath", file_count="multiple") gives paths; tolerate a single path too."""
    if not files:
        return []
    if isinstance(files, str):
        return [files]
    return [str(getattr(f, "path", f)) for f in files]


class ChatApi:
    def __init__(self, handlers: ChatHandlers) -> None:
        self.handlers = handlers
        self.services = handlers.services

    def chat(
        self,
        text: str,
        images: list[Any] | None,
        temperature: float,
        top_p: float,
        max_new_tokens: float,
        response_format: str,
        model: str,
        template: str | None,
        state: ChatState,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Outputs: answer so far, info (finish reason, token counts, timings), state."""
        session = session_id(request)
        try:
            paths = cs.check_message(text, _paths(images), self.services.uploads)
            asked = cs.add_question(state, cs.compose_text(text or "", response_format), paths)
            params = sampling_params(temperature, top_p, max_new_tokens)
            backend = self.services.backend(model, template_or_none(template))
            final: Outcome | None = None
            for item in self.services.answer(session, backend, asked.conversation, params):
                if isinstance(item, Outcome):
                    final = item
                else:
                    yield item.text, gr.skip(), gr.skip()
        except (ChatInputError, ModelUnavailableError, SessionBusyError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        if final is None or final.error is not None:
            code = final.error_code if final else "internal_error"
            raise gr.Error(f"{code}: {final.error if final else 'no answer'}", print_exception=False)
        yield final.text, outcome_info(final), cs.add_answer(asked, final)

    def new_conversation(self, request: gr.Request) -> tuple[ChatState, dict[str, Any]]:
        """Outputs: state, info."""
        self.services.generations.stop(session_id(request), wait_s=5.0)
        return ChatState(), {"cleared": True}
