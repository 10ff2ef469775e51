"""The before/after zero-shot table of several tuning strategies, built from each strategy's own report.

``python -m trainer.react synthworld --strategy all --out DIR`` writes one ``DIR/<strategy>/report.json`` per
strategy; this module turns them into ``DIR/table.json`` and ``DIR/table.md`` (the dissertation's Table 2.6 in
miniature). Every number in the table is copied from a report, so a table can be rebuilt from the reports alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TABLE_JSON = "table.json"
TABLE_MD = "table.md"
# What each row copies from its strategy's report, besides the scores.
ROW_FIELDS = ("strategy", "trainable_parameters", "steps", "final_loss", "train_seconds", "model")


class TableError(ValueError):
    """Reports that cannot share one table (measured against different base scores)."""


def build_table(
    before: Mapping[str, Mapping[str, Any]],
    reports: Sequence[Mapping[str, Any]],
    tasks: Sequence[str],
    *,
    preset: str,
    subset_pairs: int,
) -> dict[str, Any]:
    """``{"preset", "subset_pairs", "tasks", "before", "rows": [...]}``; each row: the report's ``ROW_FIELDS``,
    ``after`` (top-1/top-5 per task) and ``top1_change_points`` (after - before, in points)."""
    rows = []
    for report in reports:
        if report["before"] != before:
            raise TableError(
                f"the {report['strategy']} report was measured against a different base evaluation; rerun it"
            )
        after = {task: _scores(report["after"][task]) for task in tasks}
        rows.append({
            **{key: report[key] for key in ROW_FIELDS},
            "after": after,
            "top1_change_points": {
                task: round(100 * (after[task]["top1"] - before[task]["top1"]), 4) for task in tasks
            },
        })  # fmt: skip
    return {
        "preset": preset,
        "subset_pairs": subset_pairs,
        "tasks": list(tasks),
        "before": {task: _scores(before[task]) for task in tasks},
        "rows": rows,
    }


def _scores(score: Mapping[str, Any]) -> dict[str, float | None]:
    return {"top1": score["top1"], "top5": score.get("top5")}


def markdown_table(table: Mapping[str, Any]) -> str:
    """One row per strategy: trainable parameters, top-1 after (change) per task, training seconds."""
    tasks, before = table["tasks"], table["before"]
    lines = [
        "| strategy | trainable params | " + " | ".join(f"{t} top-1" for t in tasks) + " | train s |",
        "|---|---|" + "---|" * len(tasks) + "---|",
        "| base (before) | - | " + " | ".join(f"{100 * before[t]['top1']:.1f}" for t in tasks) + " | - |",
    ]
    for row in table["rows"]:
        cells = [f"{100 * row['after'][t]['top1']:.1f} ({row['top1_change_points'][t]:+.1f})" for t in tasks]
        lines.append(
            f"| {row['strategy']} | {row['trainable_parameters']:,} | "
            + " | ".join(cells)
            + f" | {row['train_seconds']} |"
        )
    return "\n".join(lines) + "\n"
