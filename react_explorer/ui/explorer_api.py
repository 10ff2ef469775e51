"""The explorer's named API for ``gradio_client``: ``/react_retrieve``, ``/react_more_like_this`` and
``/react_export``. Same actions as the page; results as JSON; bad input raises ``gr.Error`` (the client's
``AppError``) with the message the page shows. The retrieval is kept per client session for the other two."""

from __future__ import annotations

from typing import Any

import gradio as gr

from react_explorer.errors import QueryError
from react_explorer.ui.explorer_actions import ExplorerResult, export_subset, neighbours, run_retrieval
from react_explorer.ui.explorer_handlers import USER_ERRORS
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.query_inputs import build_query
from react_explorer.ui.results_view import item_record
from react_explorer.ui.subset_export import export_path


class ExplorerApi:
    def __init__(self, services: ExplorerServices) -> None:
        self.services = services

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
    ) -> tuple[dict[str, Any], ExplorerResult]:
        try:
            query = build_query(index, classes, templates, template_file, mode, k, dedup, model)
            result = run_retrieval(self.services, query)
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return result_json(result), result

    def more_like_this(self, row_id: float, result: ExplorerResult | None) -> list[dict[str, Any]]:
        if result is None:
            raise gr.Error("run /react_retrieve first", print_exception=False)
        try:
            return [item_record(item) for item in neighbours(self.services, result, int(row_id))]
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def export(self, name: str, result: ExplorerResult | None) -> tuple[str, dict[str, Any]]:
        try:
            export_path(self.services.cfg.export_dir, name)  # a bad name is the first thing to hear about
            if result is None:
                raise QueryError("run /react_retrieve first; then its subset can be exported")
            done = export_subset(self.services, result, name)
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return str(done.path), {
            "file": str(done.path),
            "rows": done.rows,
            "distinct_pairs": done.distinct_pairs,
            "dropped_missing": done.dropped_missing,
        }


def result_json(result: ExplorerResult) -> dict[str, Any]:
    """Per class: its pairs (best first) with metadata; then the coverage statistics."""
    stats = result.stats
    return {
        "index": result.query.index,
        "prompts": result.query.prompt_count,
        "seconds": round(result.seconds, 4),
        "classes": {
            name: {
                "pairs": len(items),
                "removed_duplicates": result.retrieval.removed_duplicates.get(name, 0),
                "results": [item_record(item) for item in items],
            }
            for name, items in result.items.items()
        },
        "coverage": {
            "classes": list(stats.classes),
            "pairs": list(stats.pairs),
            "exclusive": list(stats.exclusive),
            "overlap": stats.overlap.tolist(),
            "total_unique": stats.total_unique,
            "histogram_edges": [round(float(e), 6) for e in result.histogram_edges],
            "histogram_counts": result.histogram_counts.tolist(),
        },
    }
