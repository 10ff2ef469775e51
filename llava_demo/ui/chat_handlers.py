"""The chat tab's event handlers. Each one maps component values to component updates and leaves the decisions
to ``chat_state`` (pure) and ``ChatServices`` (models, running answers). Errors never escape as tracebacks:
the UI handlers show them in the status line with their real cause, the API handlers raise ``gr.Error`` with
the same message so ``gradio_client`` callers read it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from llava_demo.backends.base import SamplingParams
from llava_demo.ui import chat_state as cs
from llava_demo.ui.anyres_panel import DEFAULT_COUNTER, anyres_view, counter_for
from llava_demo.ui.backend_pool import ModelUnavailableError
from llava_demo.ui.chat_services import ChatServices, session_id
from llava_demo.ui.chat_state import ChatInputError, ChatState
from llava_demo.ui.feedback import feedback_record
from llava_demo.ui.generations import Outcome, SessionBusyError
from llava_demo.ui.model_card import model_card_line
from vision_common.images.load import ImageInputError

log = logging.getLogger("llava_demo.ui.chat")
MODEL_DEFAULT_TEMPLATE = "(model default)"
NO_IMAGE_TEXT = "Attach an image to see how AnyRes tiles it and how many tokens it costs."


def error_status(message: str) -> str:
    return f"**Error:** {message}"


def template_or_none(template: str | None) -> str | None:
    return None if not template or template == MODEL_DEFAULT_TEMPLATE else template


def sampling_params(temperature: float, top_p: float, max_new_tokens: float) -> SamplingParams:
    """The sliders' values as ``SamplingParams`` (``ChatInputError`` naming the parameter when out of range)."""
    try:
        return SamplingParams(
            temperature=float(temperature), top_p=float(top_p), max_new_tokens=int(max_new_tokens)
        )
    except (TypeError, ValueError) as exc:
        raise ChatInputError(f"parameters: {exc}") from exc


def image_choices(state: ChatState) -> list[tuple[str, str]]:
    images = state.images
    return [
        (f"image {i} of {len(images)}: {path.rsplit('/', 1)[-1]}", path) for i, path in enumerate(images, 1)
    ]


def turn_buttons(busy: bool) -> tuple[Any, ...]:
    """Stop, Regenerate, Undo, Clear: while an answer is written only Stop works (the others would race the
    answer's own update of the conversation)."""
    return (gr.Button(interactive=busy), *(gr.Button(interactive=not busy) for _ in range(3)))


def image_picker(state: ChatState) -> Any:
    choices = image_choices(state)
    return gr.Dropdown(choices=choices, value=choices[-1][1] if choices else None)


class ChatHandlers:
    def __init__(self, services: ChatServices) -> None:
        self.services = services

    # -- a UI turn: show the question, answer it, give the input back --------------------------------------

    def add_message(
        self, message: dict[str, Any] | None, state: ChatState, response_format: str, request: gr.Request
    ) -> tuple[Any, ...]:
        """Outputs: state, chatbot, input box, status, image picker, Stop/Regenerate/Undo/Clear buttons."""
        message = message or {}
        try:
            images = cs.check_message(message.get("text"), message.get("files"), self.services.uploads)
            text = cs.compose_text(message.get("text") or "", response_format)
            new_state = cs.add_question(state, text, images)
        except ChatInputError as exc:
            return state, gr.skip(), gr.skip(), error_status(str(exc)), *(gr.skip(),) * 5
        self.services.generations.expect(session_id(request))
        return (
            new_state,
            cs.chatbot_messages(new_state, partial=""),
            gr.MultimodalTextbox(value=None, interactive=False),
            "Thinking…",
            image_picker(new_state) if images else gr.skip(),
            *turn_buttons(busy=True),
        )

    def respond(
        self,
        state: ChatState,
        model: str,
        template: str | None,
        temperature: float,
        top_p: float,
        max_new_tokens: float,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """Stream the answer to the last question. Outputs: state, chatbot, status, input box."""
        session = session_id(request)
        if not state.awaiting_answer:  # add_message refused the input (the status says why)
            self.services.generations.forget_expected(session)
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        try:
            params = sampling_params(temperature, top_p, max_new_tokens)
            if not self._loaded(model, template):
                yield state, gr.skip(), f"Loading model `{model}`…", gr.skip()
            backend = self.services.backend(model, template_or_none(template))
            final: Outcome | None = None
            for item in self.services.answer(session, backend, state.conversation, params):
                if isinstance(item, Outcome):
                    final = item
                else:
                    yield state, cs.chatbot_messages(state, partial=item.text), gr.skip(), gr.skip()
        except (ChatInputError, ModelUnavailableError, SessionBusyError) as exc:
            self.services.generations.forget_expected(session)
            final = None
            problem = str(exc)
        else:
            problem = final.error if final is not None and final.error is not None else None
        if final is not None and final.error is None:
            new_state = cs.add_answer(state, final)
            yield new_state, cs.chatbot_messages(new_state), cs.outcome_status(final), gr.skip()
            return
        # The question goes back into the input box so it can be sent again (or edited) in one step.
        new_state, text, images = cs.drop_question(state)
        status = cs.outcome_status(final) if final is not None else error_status(problem or "unknown error")
        yield new_state, cs.chatbot_messages(new_state), status, {"text": text, "files": images}

    def end_turn(self) -> tuple[Any, ...]:
        """Outputs: input box (usable again), Stop/Regenerate/Undo/Clear buttons."""
        return gr.MultimodalTextbox(interactive=True), *turn_buttons(busy=False)

    def stop(self, request: gr.Request) -> dict[str, Any]:
        """Cancel this session's answer and report how the backend ended it (the /stop endpoint too)."""
        outcome = self.services.generations.stop(session_id(request))
        if outcome is None:
            return {"stopped": False, "detail": "no answer was being written (a queued one will not start)"}
        return {"stopped": True, **outcome_info(outcome)}

    def prepare_regenerate(self, state: ChatState, request: gr.Request) -> tuple[Any, ...]:
        """Outputs: state, chatbot, input box, status, Stop/Regenerate/Undo/Clear buttons."""
        try:
            new_state = cs.for_regenerate(state)
        except ChatInputError as exc:
            return state, gr.skip(), gr.skip(), error_status(str(exc)), *(gr.skip(),) * 4
        self.services.generations.expect(session_id(request))
        return (
            new_state,
            cs.chatbot_messages(new_state, partial=""),
            gr.MultimodalTextbox(interactive=False),
            "Regenerating…",
            *turn_buttons(busy=True),
        )

    def undo(self, state: ChatState) -> tuple[Any, ...]:
        """Outputs: state, chatbot, input box, status, image picker."""
        try:
            new_state, text, images = cs.undo(state)
        except ChatInputError as exc:
            return state, gr.skip(), gr.skip(), error_status(str(exc)), gr.skip()
        return (
            new_state,
            cs.chatbot_messages(new_state),
            {"text": text, "files": images},
            "Removed the last question and its answer; they are back in the input box.",
            image_picker(new_state),
        )

    def clear(self, request: gr.Request) -> tuple[Any, ...]:
        """Outputs: state, chatbot, input box, status, image picker."""
        self.services.generations.stop(session_id(request), wait_s=5.0)
        return ChatState(), [], None, "New conversation.", gr.Dropdown(choices=[], value=None)

    # -- side panels ----------------------------------------------------------------------------------------

    def anyres(self, image_path: str | None, model: str, template: str | None) -> tuple[Any, ...]:
        """Outputs: token count, summary, grid picture, crops gallery."""
        if not image_path:
            return "", NO_IMAGE_TEXT, None, []
        counter, source = DEFAULT_COUNTER, "LLaVA-1.6 defaults"
        if self.services.local:
            try:
                counter, source = counter_for(self.services.backend(model, template_or_none(template)))
            except ModelUnavailableError as exc:
                source = f"LLaVA-1.6 defaults, because the selected model is unavailable ({exc})"
        else:
            counter, source = counter_for(None)
        try:
            view = anyres_view(image_path, self.services.uploads.load(image_path), counter, source)
        except ImageInputError as exc:
            return "", error_status(str(exc)), None, []
        return str(view.token_count), view.summary(), view.grid_picture, list(view.crops)

    def model_banner(self, model: str) -> str:
        problem = self.services.model_problem(model)
        if problem is None:
            return ""
        return f"⚠️ **Model `{model}` is not available.** {problem}"

    def model_card(self, model: str) -> str:
        return model_card_line(model, self.services.settings.backend)

    def refresh_models(self, current: str) -> Any:
        choices = [(c.label, c.value) for c in self.services.model_choices()]
        values = {value for _, value in choices}
        return gr.Dropdown(choices=choices, value=current if current in values else choices[0][1])

    def record_feedback(self, state: ChatState, model: str, data: gr.LikeData, request: gr.Request) -> str:
        """Append a like/dislike to the feedback log. Output: status."""
        if self.services.feedback is None:
            return "Feedback is turned off (--feedback-log '')."
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        turns = state.conversation.turns
        if not isinstance(index, int) or not 0 <= index < len(turns) or turns[index].role != "assistant":
            return error_status(f"cannot match the rated message (index {data.index!r}) to an answer")
        question = turns[index - 1]
        record = self.services.feedback.append(
            feedback_record(
                liked=data.liked,
                index=index,
                answer=turns[index].text,
                question=question.text,
                images=[str(image) for image in question.images],
                model=model,
                session=session_id(request),
            )
        )
        return f"Thanks: recorded your {record['type']} in `{self.services.feedback.path.name}`."

    def _loaded(self, model: str, template: str | None) -> bool:
        return (model, template_or_none(template)) in self.services.pool.loaded_models()


def outcome_info(outcome: Outcome) -> dict[str, Any]:
    """The JSON the API returns next to an answer."""
    usage = outcome.usage
    return {
        "finish_reason": outcome.finish_reason,
        "error": outcome.error,
        "error_code": outcome.error_code,
        "notices": list(outcome.notices),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "image_tokens": usage.image_tokens if usage else None,
        "seconds": round(outcome.seconds, 3),
        "first_token_s": round(outcome.first_token_s, 3) if outcome.first_token_s is not None else None,
    }
