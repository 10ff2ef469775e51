"""The explorer tab's event handlers: component values in, component updates out. Decisions live in the pure
modules and ``explorer_actions``; here errors become a status line and a toast (``gr.Warning``), so a bad class
list, template file, model or index never stops the app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gradio as gr
from PIL import Image, ImageDraw

from react_explorer.errors import ReactExplorerError
from react_explorer.index.manifest import read_manifest
from react_explorer.ui.coverage_pictures import histogram_picture, overlap_picture
from react_explorer.ui.explorer_actions import (
    ExplorerResult,
    ExportResult,
    export_subset,
    find_item,
    neighbours,
    run_retrieval,
)
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.index_sources import EMBEDDED, embedded_index_ready, embedded_problem
from react_explorer.ui.query_inputs import TEMPLATE_FILE, build_query, task_classes_text
from react_explorer.ui.results_view import (
    ResultItem,
    detail_markdown,
    displayable_image,
    gallery_caption,
    gallery_label,
    summary_rows,
)
from react_explorer.ui.safe_pictures import picture_or_error
from vision_common.atomic import OutputNotWritableError

log = logging.getLogger("react_explorer.ui")
# What counts as the user's mistake (shown as such); anything else is logged with its traceback as well.
USER_ERRORS = (ReactExplorerError, ValueError, OutputNotWritableError, FileNotFoundError)
NO_SELECTION = "Click a result to see its caption, metadata and every query that hit it."


def error_status(message: str) -> str:
    return f"**Error:** {message}"


def placeholder_image(size: int = 64) -> Image.Image:
    """Shown for pairs without a servable image file (URL-only pools, images moved since indexing)."""
    image = Image.new("RGB", (size, size), (225, 225, 225))
    ImageDraw.Draw(image).text((size // 2, size // 2), "no image", fill=(90, 90, 90), anchor="mm")
    return image


class ExplorerHandlers:
    def __init__(self, services: ExplorerServices) -> None:
        self.services = services

    # ----- form -------------------------------------------------------------------------------------------
    def index_info(self, value: str | None) -> str:
        """What the selected index is, without loading it."""
        if not value:
            return "Choose an index."
        try:
            if value == EMBEDDED:
                problem = embedded_problem(self.services.cfg)
                if problem:
                    return error_status(problem)
                directory = self.services.index_dir(value)
                building = self.services.background.describe()
                if not embedded_index_ready(directory) and self.services.background.state().running:
                    return building
                if not embedded_index_ready(directory):
                    return (
                        f"The SynthWorld pool ({self.services.cfg.pool_parquet}) is indexed on first use into "
                        f"`{directory}`; the first retrieval waits for it (progress shown)."
                    )
            manifest = read_manifest(self.services.index_dir(value))
        except USER_ERRORS as exc:
            return error_status(str(exc))
        kinds = ", ".join(f"{m}: {e['plan']['factory']}" for m, e in manifest.modalities.items())
        return f"{manifest.count:,} pairs, {manifest.dim}-d ({kinds}); model `{manifest.model}`"

    def build_tick(self, value: str | None) -> tuple[str, Any]:
        """The index line while the background build runs; the timer stops once it is over."""
        return self.index_info(value), gr.Timer(active=self.services.background.state().running)

    def refresh_indexes(self, current: str | None) -> Any:
        choices = [(choice.label, choice.value) for choice in self.services.choices()]
        values = [value for _, value in choices]
        return gr.Dropdown(choices=choices, value=current if current in values else values[0])

    def fill_task(self, task: str | None, current: str) -> tuple[Any, str]:
        """A SynthWorld task fills the class box with its classes (one per line)."""
        if not task:
            return gr.skip(), ""
        try:
            return task_classes_text(self.services.cfg.tasks_dir, task), ""
        except USER_ERRORS as exc:
            gr.Warning(str(exc))
            return current, error_status(str(exc))

    @staticmethod
    def template_uploaded(path: str | None) -> Any:
        return gr.Radio(value=TEMPLATE_FILE) if path else gr.skip()

    # ----- retrieval --------------------------------------------------------------------------------------
    def retrieve(
        self,
        index: str,
        classes: str,
        templates: str,
        template_file: str | None,
        mode: str,
        k: float,
        dedup: bool,
        model: str,
        task: str | None = None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's injection protocol
    ) -> tuple[Any, ...]:
        """Galleries (one per class), summary, coverage pictures, status, cleared selection, the new result.

        An empty class box with a task chosen means the task's classes: a Retrieve pressed right after picking
        a task can arrive before the box is filled, and once answered "the class list is empty" (issue 19)."""
        try:
            if task and not (classes or "").strip():
                classes = task_classes_text(self.services.cfg.tasks_dir, task)
            query = build_query(index, classes, templates, template_file, mode, k, dedup, model)
            result = run_retrieval(self.services, query, notice=_notice(progress))
        except USER_ERRORS as exc:
            _log_unexpected(exc)
            gr.Warning(str(exc))
            return self._unchanged(error_status(str(exc)))
        return (*self._galleries(result), *self._coverage(result), self._status(result),
                NO_SELECTION, gr.Button(interactive=False), gr.Gallery(value=[], label="More like this"),
                result, None, [])  # fmt: skip

    def _unchanged(self, status: str) -> tuple[Any, ...]:
        count = self.services.cfg.max_galleries
        return (*(gr.skip() for _ in range(count)), gr.skip(), gr.skip(), gr.skip(), status,
                *(gr.skip() for _ in range(6)))  # fmt: skip

    def _galleries(self, result: ExplorerResult) -> list[Any]:
        cfg, roots = self.services.cfg, self.services.allowed_roots()
        placeholder = placeholder_image()
        updates = []
        names = list(result.items)
        for slot in range(cfg.max_galleries):
            if slot >= len(names):
                updates.append(gr.Gallery(value=[], visible=False))
                continue
            name = names[slot]
            items = result.items[name]
            shown = items[: cfg.gallery_limit]
            removed = result.retrieval.removed_duplicates.get(name, 0)
            updates.append(
                gr.Gallery(
                    value=[self._media(item, roots, placeholder) for item in shown],
                    label=gallery_label(name, len(shown), len(items), removed),
                    visible=True,
                    selected_index=None,
                )
            )
        return updates

    @staticmethod
    def _coverage(result: ExplorerResult) -> tuple[Any, Any, Any]:
        table = gr.Dataframe(value=summary_rows(result.retrieval, result.stats))
        overlap = picture_or_error(
            "overlap picture", lambda: overlap_picture(result.stats.classes, result.stats.overlap)
        )
        histogram = picture_or_error(
            "similarity histogram", lambda: histogram_picture(result.histogram_edges, result.histogram_counts)
        )
        return table, overlap, histogram

    def _status(self, result: ExplorerResult) -> str:
        query, stats = result.query, result.stats
        parts = [
            f"{len(query.class_names)} classes x {len(query.templates)} templates ({query.template_source}) = "
            f"{query.prompt_count} prompts, {query.retrieval.mode}, k = {query.retrieval.k}"
            f"{', near-duplicates removed' if query.retrieval.dedup else ''}: "
            f"**{stats.total_unique} distinct pairs** of {result.index_count:,} in {result.seconds:.2f} s."
        ]
        hidden = len(query.class_names) - self.services.cfg.max_galleries
        if hidden > 0:
            parts.append(f"{hidden} classes have no gallery (see the table; the export has them all).")
        return " ".join(parts)

    # ----- one result -------------------------------------------------------------------------------------
    def select_handler(self, slot: int) -> Callable[..., tuple[Any, ...]]:
        """The ``select`` handler of gallery ``slot`` (the slot-th class of the current result)."""

        def select(result: ExplorerResult | None, evt: gr.SelectData) -> tuple[Any, ...]:
            if result is None or slot >= len(result.items):
                return NO_SELECTION, gr.Button(interactive=False), None
            try:
                item = find_item(result, list(result.items)[slot], int(evt.index))
            except USER_ERRORS as exc:
                return error_status(str(exc)), gr.Button(interactive=False), None
            return detail_markdown(item), gr.Button(interactive=True), item

        return select

    @staticmethod
    def select_neighbour(found: list[ResultItem], evt: gr.SelectData) -> tuple[Any, ...]:
        if not found or not 0 <= int(evt.index) < len(found):
            return NO_SELECTION, gr.Button(interactive=False), None
        item = found[int(evt.index)]
        return detail_markdown(item), gr.Button(interactive=True), item

    def more_like_this(self, result: ExplorerResult | None, item: ResultItem | None) -> tuple[Any, ...]:
        if result is None or item is None:
            return gr.skip(), "Click a result first.", gr.skip()
        try:
            found = neighbours(self.services, result, item.id)
        except USER_ERRORS as exc:
            _log_unexpected(exc)
            gr.Warning(str(exc))
            return gr.skip(), error_status(str(exc)), gr.skip()
        placeholder, roots = placeholder_image(), self.services.allowed_roots()
        gallery = gr.Gallery(
            value=[self._media(n, roots, placeholder) for n in found],
            label=f"More like this: pool row {item.id} ({len(found)} neighbours)",
            selected_index=None,
        )
        return gallery, f"{len(found)} pairs nearest to pool row {item.id}.", found

    def _media(self, item: ResultItem, roots: list, placeholder: Image.Image) -> tuple[Any, str]:
        """A staged copy of the item's image (never a path into the pool folder), or the placeholder."""
        path = displayable_image(item, roots)
        staged = self.services.shown.stage(path) if path else None
        return staged or placeholder, gallery_caption(item)

    # ----- export -----------------------------------------------------------------------------------------
    def export(self, result: ExplorerResult | None, name: str) -> tuple[Any, str, Any]:
        """The file, the status, and the export's handoff (kept in a ``gr.State`` for other tabs' flows)."""
        if result is None:
            return (
                gr.skip(),
                error_status("run a retrieval first; then its subset can be exported"),
                gr.skip(),
            )
        try:
            done = export_subset(self.services, result, name)
        except USER_ERRORS as exc:
            _log_unexpected(exc)
            gr.Warning(str(exc))
            return gr.skip(), error_status(str(exc)), gr.skip()
        return str(done.path), export_status(done), done.handoff


def export_status(done: ExportResult) -> str:
    """Rows and distinct pairs: a pair retrieved for two classes is one row per class (issue 19: "249 rows"
    against a status that had said "248 pairs")."""
    dropped = (
        f" ({done.dropped_missing} rows left out: their image file is missing)"
        if done.dropped_missing
        else ""
    )
    rows = f"{done.rows} row" if done.rows == 1 else f"{done.rows} rows"
    pairs = (
        f"{done.distinct_pairs} distinct pair"
        if done.distinct_pairs == 1
        else f"{done.distinct_pairs} distinct pairs"
    )
    shared = (
        " (a pair retrieved for several classes has one row per class)"
        if done.rows != done.distinct_pairs
        else ""
    )
    return f"Exported {rows}, {pairs}{shared}, to `{done.path}`{dropped}."


def _notice(progress: gr.Progress) -> Callable[[str], None]:
    def notice(message: str) -> None:
        gr.Info(message)
        progress(0, desc=message)

    return notice


def _log_unexpected(exc: BaseException) -> None:
    if not isinstance(exc, ReactExplorerError):
        log.warning("explorer request failed: %s", exc, exc_info=exc)
