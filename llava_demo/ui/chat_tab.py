"""The visual chat tab: layout and event wiring (the logic lives in ``chat_handlers`` / ``chat_state``).

Policy shown to users: any message may attach one or more images (upload, paste or drag onto the input box);
they stay in the conversation, so later questions can refer to every image so far. Stop cancels the answer in
the backend; Regenerate answers the last question again; Undo puts the last question back into the input box.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from llava_demo.ui.chat_api import ChatApi
from llava_demo.ui.chat_handlers import MODEL_DEFAULT_TEMPLATE, NO_IMAGE_TEXT, ChatHandlers
from llava_demo.ui.chat_services import ChatServices
from llava_demo.ui.chat_state import FREE_FORM, RESPONSE_FORMATS, ChatState
from llava_demo.ui.settings import ChatSettings
from vision_common.app_tab import AppTab
from vision_common.chat.templates import template_names

GENERATE = "generate"  # the concurrency group of every event that runs the model
POLICY = (
    "Attach images with the clip button, paste or drop them on the input box; several images per message and per "
    "conversation are fine. **Stop** cancels the answer in the model, **Regenerate** answers the last question "
    "again, **Undo** puts the last question back into the box."
)


def chat_tab(settings: ChatSettings) -> AppTab:
    """The chat tab from its own settings (the app shell calls this; so do tests)."""
    services = ChatServices.create(settings)
    return tab_from_services(services)


def tab_from_services(services: ChatServices) -> AppTab:
    example_dirs = tuple(sorted({str(example.image.parent) for example in services.examples}))
    return AppTab(
        title="Visual chat",
        tab_id="chat",
        build=lambda: build_chat_tab(services),
        startup=services.preload,
        close=services.close,
        allowed_paths=example_dirs,
    )


def build_chat_tab(services: ChatServices) -> None:
    """Create the components and events inside the current ``gr.Tab``."""
    settings = services.settings
    handlers, api = ChatHandlers(services), ChatApi(ChatHandlers(services))
    choices = [(choice.label, choice.value) for choice in services.model_choices()]
    state = gr.State(ChatState())

    banner = gr.Markdown(handlers.model_banner(settings.model), elem_id="chat-model-banner")
    with gr.Row():
        with gr.Column(scale=3, min_width=260):
            with gr.Row():
                model = gr.Dropdown(
                    choices=choices,
                    value=settings.model,
                    label="Model",
                    info="a preset or checkpoint"
                    + (", or type a folder or hub id" if settings.loopback_only else ""),
                    allow_custom_value=services.local and settings.loopback_only,
                    scale=5,
                    elem_id="chat-model",
                )
                refresh = gr.Button("Refresh", scale=1, min_width=60, elem_id="chat-refresh-models")
            card = gr.Markdown(handlers.model_card(settings.model), elem_id="chat-model-card")
            template = gr.Dropdown(
                choices=[MODEL_DEFAULT_TEMPLATE, *template_names()],
                value=MODEL_DEFAULT_TEMPLATE,
                label="Chat template",
                info="override the model's template (local backend only)",
                interactive=services.local,
            )
            response_format = gr.Dropdown(
                choices=list(RESPONSE_FORMATS),
                value=FREE_FORM,
                label="Response format",
                elem_id="chat-format",
            )
            with gr.Accordion("Parameters", open=False, elem_id="chat-parameters"):
                temperature = gr.Slider(
                    0.0,
                    1.0,
                    value=0.2,
                    step=0.05,
                    label="Temperature (0 = greedy)",
                    elem_id="chat-temperature",
                )
                top_p = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="Top p", elem_id="chat-top-p")
                max_new_tokens = gr.Slider(
                    1, 1024, value=512, step=1, label="Max new tokens", elem_id="chat-max-tokens"
                )
        with gr.Column(scale=8):
            chatbot = gr.Chatbot(
                label="LLaVA-NeXT",
                height=480,
                feedback_options=("Like", "Dislike") if services.feedback else None,
                elem_id="chat-chatbot",
            )
            status = gr.Markdown(elem_id="chat-status")
            message = gr.MultimodalTextbox(
                file_count="multiple",
                sources=["upload"],
                placeholder="Ask about an image…",
                show_label=False,
                elem_id="chat-input",
            )
            with gr.Row():
                stop = gr.Button("Stop", interactive=False, variant="stop", elem_id="chat-stop")
                regenerate = gr.Button("Regenerate", elem_id="chat-regenerate")
                undo = gr.Button("Undo", elem_id="chat-undo")
                clear = gr.Button("Clear", elem_id="chat-clear")
            gr.Markdown(POLICY)
            _examples(services, message)

    with gr.Accordion("AnyRes: how the current image is tiled", open=True, elem_id="anyres-panel"):
        with gr.Row():
            image_pick = gr.Dropdown(choices=[], label="Image", scale=3, elem_id="anyres-image")
            tokens = gr.Textbox(
                label="Image tokens", interactive=False, scale=1, elem_id="anyres-token-count"
            )
        summary = gr.Markdown(NO_IMAGE_TEXT, elem_id="anyres-summary")
        with gr.Row():
            grid = gr.Image(label="Grid over the image", type="pil", interactive=False, scale=3)
            crops = gr.Gallery(label="Crops the encoder sees (base + tiles)", columns=4, scale=2)

    # Components that only the API uses (gradio_client passes their values).
    with gr.Group(visible=False):
        api_text = gr.Textbox(label="text")
        api_images = gr.File(label="images", file_count="multiple", type="filepath")
        api_answer = gr.Textbox(label="answer")
        api_info = gr.JSON(label="info")
        api_chat_trigger = gr.Button("chat")
        api_clear_trigger = gr.Button("new conversation")

    private: dict[str, Any] = {"api_visibility": "private"}
    cheap: dict[str, Any] = {**private, "concurrency_limit": None}
    generating: dict[str, Any] = {
        "concurrency_limit": settings.concurrency,
        "concurrency_id": GENERATE,
        "show_progress": "hidden",
    }
    buttons = [stop, regenerate, undo, clear]
    respond_inputs = [state, model, template, temperature, top_p, max_new_tokens]
    respond_outputs = [state, chatbot, status, message]

    turn = message.submit(
        handlers.add_message,
        [message, state, response_format],
        [state, chatbot, message, status, image_pick, *buttons],
        **cheap,
    )
    turn.then(handlers.respond, respond_inputs, respond_outputs, **private, **generating).then(
        handlers.end_turn, None, [message, *buttons], **cheap
    )
    again = regenerate.click(
        handlers.prepare_regenerate, [state], [state, chatbot, message, status, *buttons], **cheap
    )
    again.then(handlers.respond, respond_inputs, respond_outputs, **private, **generating).then(
        handlers.end_turn, None, [message, *buttons], **cheap
    )
    stop.click(
        handlers.stop, None, [api_info], api_name="stop", concurrency_limit=None, show_progress="hidden"
    )
    undo.click(handlers.undo, [state], [state, chatbot, message, status, image_pick], **cheap)
    clear.click(handlers.clear, None, [state, chatbot, message, status, image_pick], **cheap)

    panel_outputs = [tokens, summary, grid, crops]
    image_pick.change(handlers.anyres, [image_pick, model, template], panel_outputs, **cheap)
    model.change(handlers.model_banner, [model], [banner], **cheap).then(
        handlers.anyres, [image_pick, model, template], panel_outputs, **cheap
    )
    model.change(handlers.model_card, [model], [card], **cheap)
    refresh.click(handlers.refresh_models, [model], [model], **cheap)
    if services.feedback:
        chatbot.like(handlers.record_feedback, [state, model], [status], **cheap)

    api_chat_trigger.click(
        api.chat,
        [api_text, api_images, temperature, top_p, max_new_tokens, response_format, model, template, state],
        [api_answer, api_info, state],
        api_name="chat",
        **generating,
    )
    api_clear_trigger.click(api.new_conversation, None, [state, api_info], api_name="new_conversation")


def _examples(services: ChatServices, message: gr.MultimodalTextbox) -> None:
    if services.examples_problem:
        gr.Markdown(f"Examples are not shown: {services.examples_problem}")
    if not services.examples:
        return
    gr.Examples(
        examples=[[{"text": ex.question, "files": [str(ex.image)]}] for ex in services.examples],
        inputs=[message],
        label="SynthWorld scenes (click one, then press Enter)",
        examples_per_page=6,
    )
