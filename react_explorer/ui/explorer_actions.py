"""The explorer's three actions without any Gradio: retrieve per class, "more like this", export the subset.

Handlers (``explorer_handlers``) turn their results into components; the API endpoints into JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from react_explorer.cli.retrieve import check_subset_images
from react_explorer.errors import QueryError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.retrieval.class_queries import (
    ClassRetrieval,
    RetrievalConfig,
    more_like_this,
    retrieve_classes,
    subset_table,
)
from react_explorer.ui.coverage import CoverageStats, coverage_stats, similarity_histogram
from react_explorer.ui.explorer_services import BuildNotice, ExplorerServices
from react_explorer.ui.query_inputs import ExplorerQuery
from react_explorer.ui.results_view import ResultItem, result_items, retrieved_ids
from react_explorer.ui.subset_export import export_path, write_subset
from react_explorer.ui.subset_handoff import SubsetHandoff, subset_handoff


@dataclass(frozen=True)
class ExplorerResult:
    """One retrieval as the page keeps it (in a ``gr.State``): enough to redraw, open a result and export."""

    query: ExplorerQuery
    retrieval: ClassRetrieval
    items: dict[str, list[ResultItem]]
    stats: CoverageStats
    histogram_edges: np.ndarray
    histogram_counts: np.ndarray  # [classes, bins]
    index_count: int
    seconds: float  # model + search + metadata, without a first-use build


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int  # one per (class, pair): a pair two classes retrieved is two rows
    dropped_missing: int  # rows left out because their image file is gone
    distinct_pairs: int  # distinct pool rows among the written rows
    handoff: SubsetHandoff | None = None  # what "Customize CLIP on this subset" starts from


def run_retrieval(
    services: ExplorerServices, query: ExplorerQuery, notice: BuildNotice | None = None
) -> ExplorerResult:
    index = services.open_index(query.index, notice)
    start = time.perf_counter()
    encoder = services.encoder(index, query.model)
    retrieval = retrieve_classes(index, encoder, query.class_names, query.templates, query.retrieval)
    items = result_items(retrieval, _rows_by_id(index, retrieved_ids(retrieval)))
    stats = coverage_stats({name: [hit.id for hit in hits] for name, hits in retrieval.per_class.items()})
    edges, counts = similarity_histogram(
        {name: [hit.similarity for hit in hits] for name, hits in retrieval.per_class.items()}
    )
    seconds = time.perf_counter() - start
    return ExplorerResult(query, retrieval, items, stats, edges, counts, index.count, seconds)


def neighbours(services: ExplorerServices, result: ExplorerResult, row_id: int) -> list[ResultItem]:
    """The k pool rows nearest to ``row_id``'s own embedding (image embedding when the index has one), without
    the row itself: the user is looking at it already (issue 19)."""
    index = services.open_index(result.query.index)
    modality = "image" if "image" in index.modalities else "text"
    # No dedup here: an item's nearest neighbours are its near-duplicates, which is what "more like this" asks.
    k = result.query.retrieval.k
    cfg: RetrievalConfig = replace(result.query.retrieval, dedup=False, k=min(k + 1, max(index.count, 1)))
    found = more_like_this(index, int(row_id), cfg, modality=modality)
    items = next(iter(result_items(found, _rows_by_id(index, retrieved_ids(found))).values()))
    others = [item for item in items if item.id != int(row_id)][:k]
    return [replace(item, rank=rank) for rank, item in enumerate(others)]


def export_subset(services: ExplorerServices, result: ExplorerResult, name: str | None) -> ExportResult:
    """The subset parquet (``retrieve``'s schema) in the export folder; rows whose image is gone are dropped."""
    path = export_path(services.cfg.export_dir, name)  # a bad name is refused before any work
    index = services.open_index(result.query.index)
    table, dropped = check_subset_images(subset_table(index, result.retrieval), skip_missing=True)
    write_subset(table, path)
    distinct = len(set(table.column("id").to_pylist())) if table.num_rows else 0
    names = tuple(result.query.class_names)
    handoff = subset_handoff(index, path, names, table.num_rows, services.cfg.tasks_dir)
    return ExportResult(path, table.num_rows, dropped, distinct, handoff)


def find_item(result: ExplorerResult, class_name: str, position: int) -> ResultItem:
    items = result.items.get(class_name)
    if items is None or not 0 <= position < len(items):
        raise QueryError(f"no result {position} for class {class_name!r} (run the retrieval again?)")
    return items[position]


def _rows_by_id(index: ClipIndex, ids: list[int]) -> dict[int, dict]:
    return dict(zip(ids, index.rows(ids), strict=True)) if ids else {}
