"""What a finished REACT job shows in the launcher: the zero-shot before/after table from its ``zeroshot.json``,
and the index-build job that re-embeds its pool with the customized CLIP ("Re-index the pool with this CLIP").

Pure functions of a job record and its run folder (no Gradio): the tab renders them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.launcher.registry import JobRecord
from vision_common.open_clip_dir import OPEN_CLIP_CONFIG_NAME

REPORT_NAME = "zeroshot.json"  # written by both react-customize (with an eval_task) and react-eval
REACT_TYPES = ("react-customize", "react-eval")
REINDEX_TYPE = "index-build"
ZEROSHOT_HEADERS = ["task", "metric", "before", "after", "change"]
# A report is a few hundred bytes per task; anything far larger is not one of ours and is not parsed.
MAX_REPORT_BYTES = 1_000_000
METRICS = (("top1", "top-1"), ("top5", "top-5"))


class ReindexError(ValueError):
    """The selected job cannot be re-indexed with; the message says why and what to do instead."""


def read_report(job: JobRecord, run_dir: Path) -> dict[str, Any] | None:
    """The before/after report of a succeeded REACT job, or None (another type, not finished, no report)."""
    path = run_dir / REPORT_NAME
    if job.type not in REACT_TYPES or job.state != "succeeded" or not path.is_file():
        return None
    if path.stat().st_size > MAX_REPORT_BYTES:
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (
        report
        if isinstance(report, dict) and isinstance(report.get("after", report.get("tasks")), dict)
        else None
    )


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def before_after_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per task and metric: task, top-1 / top-5, before and after in percent, the change in points.

    A metric neither side has (top-5 of a task with 5 classes or fewer) gets no row; a report without a
    baseline (``react-eval`` run without one) has "-" before and no change."""
    after: dict[str, Any] = report.get("after", report.get("tasks", {}))
    before: dict[str, Any] = report.get("before", {})
    rows = []
    for task, scores in after.items():
        base = before.get(task, {})
        for key, label in METRICS:
            a, b = scores.get(key), base.get(key)
            if a is None and b is None:
                continue
            both = all(isinstance(x, int | float) for x in (a, b))
            change = f"{100 * (a - b):+.1f}" if both else "-"
            rows.append([task, label, _percent(b), _percent(a), change])
    return rows


def customized_model(run_dir: Path) -> Path | None:
    """The customized CLIP a finished ``react-customize`` run exported (an open_clip directory), or None."""
    final = run_dir / "final"
    return final if (final / OPEN_CLIP_CONFIG_NAME).is_file() else None


def reindex_values(job: JobRecord, run_dir: Path) -> dict[str, Any]:
    """The ``index-build`` parameters that embed the job's pool with its customized CLIP."""
    model = customized_model(run_dir) if job.type == "react-customize" and job.state == "succeeded" else None
    if model is None:
        raise ReindexError(f"job {job.id} is not a finished react-customize job with a customized model")
    pool = job.params.get("pool")
    if not isinstance(pool, str) or not pool:
        raise ReindexError(
            f"job {job.id} records no pool (its 'pool' parameter is empty): start an index-build job with "
            f"model = {model} and your pool"
        )
    return {"pool": pool, "model": str(model)}
