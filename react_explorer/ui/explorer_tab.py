"""The REACT explorer tab: layout and event wiring (logic in ``explorer_handlers`` and the pure modules).

Galleries are a fixed pool of ``max_galleries`` hidden ``gr.Gallery`` components, one per class slot, shown
and relabelled by each retrieval. Unlike ``@gr.render`` this keeps one ``select`` listener per gallery, wired
once, and stable element ids for browser tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from react_explorer.retrieval.class_queries import MODES
from react_explorer.ui.explorer_api import ExplorerApi
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.explorer_handlers import NO_SELECTION, ExplorerHandlers
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.index_sources import EMBEDDED, embedded_problem
from react_explorer.ui.query_inputs import DEFAULT_TEMPLATES, MAX_K, TEMPLATE_CHOICES, list_tasks
from react_explorer.ui.results_view import SUMMARY_HEADERS
from vision_common.app_tab import AppTab

HELP = (
    "REACT retrieval: every class name is put into every template, each prompt retrieves its top **k** pairs "
    "from the pool (**t2t**: by caption embedding, **t2i**: by image embedding), and the hits are merged per "
    "class. **Dedup** removes pairs whose images are near-duplicates (cosine >= 0.94) of a better-ranked one."
)


@dataclass(frozen=True)
class ExplorerPorts:
    """What the tab offers other tabs' flows (wired by the app shell, which may import the launcher)."""

    subset_handoff: gr.State
    """The last export's ``SubsetHandoff`` (None before any export)."""
    customize: gr.Button
    """"Customize CLIP on this subset": hidden until an export, and unless a flow wires it."""


def react_explorer_tab(cfg: ExplorerConfig) -> AppTab:
    """The explorer tab from its own settings (cheap: reads manifests, loads nothing)."""
    return tab_from_services(ExplorerServices(cfg))


def tab_from_services(services: ExplorerServices) -> AppTab:
    # Only the exports are served as a folder; shown images are staged copies (``served_images``), so the pool
    # folder (its metadata, pool_truth.parquet) is never reachable by URL (issue 19).
    return AppTab(
        title="REACT explorer",
        tab_id="react",
        build=lambda: build_explorer_tab(services),
        startup=services.start_background_build,
        close=services.close,
        allowed_paths=(str(services.cfg.export_dir),),
    )


def build_explorer_tab(services: ExplorerServices) -> ExplorerPorts:
    cfg = services.cfg
    handlers, api = ExplorerHandlers(services), ExplorerApi(services)
    choices = [(choice.label, choice.value) for choice in services.choices()]
    # Without a generated world the first user-built index is the useful default (the embedded entry says why).
    default = choices[1][1] if embedded_problem(cfg) and len(choices) > 1 else EMBEDDED
    result_state, selected_state, neighbours_state = gr.State(None), gr.State(None), gr.State([])
    handoff_state = gr.State(None)

    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=3, min_width=280):
            with gr.Row():
                index = gr.Dropdown(
                    choices=choices, value=default, label="Index", scale=5, elem_id="react-index"
                )
                refresh = gr.Button("Refresh", scale=1, min_width=60, elem_id="react-refresh")
            index_info = gr.Markdown(handlers.index_info(default), elem_id="react-index-info")
            tasks = list_tasks(cfg.tasks_dir)
            task = gr.Dropdown(
                choices=["", *tasks],
                value="",
                label="SynthWorld task (fills the class list)",
                info=None if tasks else "no tasks: the SynthWorld world is not generated",
                elem_id="react-task",
            )
            classes = gr.Textbox(
                label="Class names",
                lines=5,
                placeholder="comma- or newline-separated, e.g. vorn, tessel, quorl",
                elem_id="react-classes",
            )
            templates = gr.Radio(
                list(TEMPLATE_CHOICES),
                value=DEFAULT_TEMPLATES,
                label="Templates",
                info="synthworld 4, simple 7, openai 80, or an uploaded file",
                elem_id="react-templates",
            )
            template_file = gr.File(
                label="Template file (one template per line, {} = class name)",
                file_types=[".txt"],
                type="filepath",
                height=90,
                elem_id="react-template-file",
            )
            with gr.Row():
                mode = gr.Radio(sorted(MODES), value="t2t", label="Mode", elem_id="react-mode")
                dedup = gr.Checkbox(value=True, label="Dedup (0.94)", elem_id="react-dedup")
            k = gr.Slider(1, MAX_K, value=50, step=1, label="k per prompt", elem_id="react-k")
            with gr.Accordion("CLIP model", open=False):
                model = gr.Textbox(
                    label="Query model (empty: the one that built the index)",
                    placeholder="local-dir:DIR or an open_clip name",
                    elem_id="react-model",
                )
            run = gr.Button("Retrieve", variant="primary", elem_id="react-run")
            status = gr.Markdown(elem_id="react-status")
        with gr.Column(scale=8):
            summary = gr.Dataframe(
                headers=list(SUMMARY_HEADERS),
                label="Summary per class",
                interactive=False,
                elem_id="react-summary",
            )
            galleries = [
                gr.Gallery(
                    visible=False,
                    columns=8,
                    height=240,
                    allow_preview=False,
                    object_fit="contain",
                    elem_id=f"react-gallery-{slot}",
                )
                for slot in range(cfg.max_galleries)
            ]
            with gr.Row():
                with gr.Column(scale=3):
                    detail = gr.Markdown(NO_SELECTION, elem_id="react-detail")
                    more = gr.Button("More like this", interactive=False, elem_id="react-more")
                with gr.Column(scale=4):
                    similar = gr.Gallery(
                        label="More like this",
                        columns=5,
                        height=300,
                        allow_preview=False,
                        elem_id="react-similar",
                    )
            with gr.Accordion("Coverage", open=True, elem_id="react-coverage"):
                with gr.Row():
                    overlap = gr.Image(
                        label="Shared pairs, class x class",
                        type="pil",
                        interactive=False,
                        elem_id="react-overlap",
                    )
                    histogram = gr.Image(
                        label="Similarity histogram", type="pil", interactive=False, elem_id="react-histogram"
                    )
            with gr.Accordion("Export the subset", open=True, elem_id="react-export-panel"):
                with gr.Row():
                    export_name = gr.Textbox(
                        label=f"Name (written to {cfg.export_dir}/NAME.parquet)",
                        value="subset",
                        scale=3,
                        elem_id="react-export-name",
                    )
                    export = gr.Button("Export", scale=1, elem_id="react-export")
                export_file = gr.File(
                    label="Subset parquet", interactive=False, height=90, elem_id="react-export-file"
                )
                customize = gr.Button(
                    "Customize CLIP on this subset",
                    visible=False,
                    variant="secondary",
                    elem_id="react-customize",
                )

    with gr.Group(visible=False):  # components only the API uses
        _api_components(api, result_state)

    private: dict[str, Any] = {"api_visibility": "private"}
    cheap: dict[str, Any] = {**private, "concurrency_limit": None}
    index.change(handlers.index_info, [index], [index_info], **cheap)
    # Every visitor sees the background build's progress: the index line is refreshed while it runs.
    ticker = gr.Timer(3.0, active=services.background.state().running)
    ticker.tick(handlers.build_tick, [index], [index_info, ticker], **cheap)
    refresh.click(handlers.refresh_indexes, [index], [index], **cheap)
    task.change(handlers.fill_task, [task, classes], [classes, status], **cheap)
    template_file.upload(handlers.template_uploaded, [template_file], [templates], **cheap)
    run.click(
        handlers.retrieve,
        [index, classes, templates, template_file, mode, k, dedup, model, task],
        [
            *galleries,
            summary,
            overlap,
            histogram,
            status,
            detail,
            more,
            similar,
            result_state,
            selected_state,
            neighbours_state,
        ],
        concurrency_id="react_retrieve",
        **private,
    )
    for slot, gallery in enumerate(galleries):
        gallery.select(handlers.select_handler(slot), [result_state], [detail, more, selected_state], **cheap)
    similar.select(handlers.select_neighbour, [neighbours_state], [detail, more, selected_state], **cheap)
    more.click(
        handlers.more_like_this,
        [result_state, selected_state],
        [similar, status, neighbours_state],
        **private,
    )
    export.click(
        handlers.export, [result_state, export_name], [export_file, status, handoff_state], **private
    )
    return ExplorerPorts(handoff_state, customize)


def _api_components(api: ExplorerApi, result_state: gr.State) -> None:
    index = gr.Textbox(label="index")
    classes = gr.Textbox(label="classes")
    templates = gr.Textbox(label="templates", value=DEFAULT_TEMPLATES)
    template_file = gr.File(label="template_file", type="filepath")
    mode = gr.Textbox(label="mode", value="t2t")
    k = gr.Number(label="k", value=50)
    dedup = gr.Checkbox(label="dedup", value=True)
    model = gr.Textbox(label="model", value="")
    row = gr.Number(label="row_id", value=0)
    name = gr.Textbox(label="name", value="subset")
    out_json, out_file = gr.JSON(label="result"), gr.File(label="subset")
    retrieve, similar, export = gr.Button("retrieve"), gr.Button("similar"), gr.Button("export")
    retrieve.click(
        api.retrieve,
        [index, classes, templates, template_file, mode, k, dedup, model],
        [out_json, result_state],
        api_name="react_retrieve",
        concurrency_id="react_retrieve",
    )
    similar.click(api.more_like_this, [row, result_state], [out_json], api_name="react_more_like_this")
    export.click(api.export, [name, result_state], [out_file, out_json], api_name="react_export")
