"""What the page shows for a retrieval, as pure functions: result items with their pool metadata, gallery
captions, the summary table and the detail panel of one clicked result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from react_explorer.retrieval.class_queries import ClassRetrieval
from react_explorer.ui.coverage import CoverageStats

CAPTION_CHARS = 70  # gallery captions are cut here; the detail panel shows the whole caption
SUMMARY_HEADERS = ("class", "pairs", "exclusive", "near-duplicates removed", "best similarity",
                   "mean similarity", "best query")  # fmt: skip


@dataclass(frozen=True)
class ResultItem:
    """One retrieved pair as the page shows it."""

    class_name: str
    rank: int
    id: int
    similarity: float
    query: str
    hits: tuple[tuple[str, float], ...]
    metadata: dict[str, Any]

    @property
    def caption(self) -> str:
        return str(self.metadata.get("caption") or "")

    @property
    def image_path(self) -> str | None:
        path = self.metadata.get("image_path")
        return str(path) if path else None


def result_items(
    retrieval: ClassRetrieval, rows_by_id: Mapping[int, dict[str, Any]]
) -> dict[str, list[ResultItem]]:
    """Per class, best first, every hit joined with its metadata row."""
    return {
        name: [
            ResultItem(
                name, rank, hit.id, hit.similarity, hit.query, tuple(hit.hits), dict(rows_by_id[hit.id])
            )
            for rank, hit in enumerate(hits)
        ]
        for name, hits in retrieval.per_class.items()
    }


def retrieved_ids(retrieval: ClassRetrieval) -> list[int]:
    """Every distinct id, in first-seen order (one metadata lookup serves all classes)."""
    return list(dict.fromkeys(hit.id for hits in retrieval.per_class.values() for hit in hits))


def gallery_caption(item: ResultItem) -> str:
    caption = item.caption if len(item.caption) <= CAPTION_CHARS else item.caption[: CAPTION_CHARS - 1] + "…"
    return f"{item.similarity:.3f} · {caption}"


def gallery_label(name: str, shown: int, total: int, removed: int) -> str:
    more = f", best {shown} shown" if shown < total else ""
    dups = f", {removed} near-duplicates removed" if removed else ""
    return f"{name}: {total} pairs{more}{dups}"


def displayable_image(item: ResultItem, allowed_roots: Sequence[Path]) -> str | None:
    """The item's image file when it exists under a folder the app serves; else None (shown as a placeholder)."""
    path = item.image_path
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        return None
    resolved = file.resolve()
    if any(root == resolved or root in resolved.parents for root in allowed_roots):
        return str(resolved)
    return None


def summary_rows(retrieval: ClassRetrieval, stats: CoverageStats) -> list[list[Any]]:
    """One row per class, in the order of ``SUMMARY_HEADERS``."""
    rows = []
    for position, (name, hits) in enumerate(retrieval.per_class.items()):
        sims = [hit.similarity for hit in hits]
        rows.append(
            [
                name,
                stats.pairs[position],
                stats.exclusive[position],
                retrieval.removed_duplicates.get(name, 0),
                round(max(sims), 4) if sims else None,
                round(sum(sims) / len(sims), 4) if sims else None,
                hits[0].query if hits else "",
            ]
        )
    return rows


def detail_markdown(item: ResultItem) -> str:
    """The clicked result: full caption, where the pair comes from, best query and every query that hit it."""
    lines = [
        f"### {item.class_name} #{item.rank + 1}: pool row {item.id}",
        f"**Caption:** {_escape(item.caption) or '(none)'}",
        "",
        "| field | value |",
        "|---|---|",
        f"| similarity | {item.similarity:.4f} |",
        f"| best query | {_escape(item.query)} |",
    ]
    for key, value in item.metadata.items():
        if key != "caption":
            lines.append(f"| {_escape(str(key))} | {_escape(str(value))} |")
    lines += ["", f"**Queries that hit it ({len(item.hits)}):**", ""]
    lines += [f"- {similarity:.4f} · {_escape(query)}" for query, similarity in item.hits]
    return "\n".join(lines)


def item_record(item: ResultItem) -> dict[str, Any]:
    """The JSON form of one result (API responses): metadata plus id, class, rank, query, similarity, hits."""
    return {
        **item.metadata,
        "id": item.id,
        "class": item.class_name,
        "rank": item.rank,
        "query": item.query,
        "similarity": round(float(item.similarity), 6),
        "hits": [{"query": q, "similarity": round(float(s), 6)} for q, s in item.hits],
    }


def _escape(text: str) -> str:
    """Keep captions from breaking the Markdown table or turning into HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")
