"""What the launcher shows, as pure functions of job records and their metrics: table rows, progress and ETA,
curve points, and the JSON the API returns."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from trainer.launcher.registry import JobRecord

TABLE_HEADERS = ["id", "type", "state", "step", "loss", "elapsed", "ETA"]


@dataclass(frozen=True)
class Progress:
    step: int | None
    total: int | None
    loss: float | None
    elapsed_s: float | None
    eta_s: float | None


def progress(job: JobRecord, metrics: list[dict[str, Any]], now: float | None = None) -> Progress:
    """Last step and loss from the metrics; elapsed from the registry; ETA from the step rate when the number
    of updates is known (``max_steps`` in the parameters) and the job runs."""
    now = time.time() if now is None else now
    steps = [r for r in metrics if isinstance(r.get("step"), int)]
    last = steps[-1] if steps else {}
    step = last.get("step")
    loss = last.get("loss") if isinstance(last.get("loss"), int | float) else None
    elapsed = None
    if job.started is not None:
        elapsed = (job.ended or now) - job.started
    total = job.params.get("max_steps") if isinstance(job.params.get("max_steps"), int) else None
    eta = None
    if job.state == "running" and total and step and elapsed and len(steps) >= 2:
        first = steps[0]
        span = (last.get("elapsed_s") or elapsed) - (first.get("elapsed_s") or 0.0)
        rate = (step - first["step"]) / span if span > 0 else None
        eta = (total - step) / rate if rate else None
    return Progress(step, total, loss, elapsed, eta)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    value = int(round(value))
    return (
        f"{value // 3600}:{value % 3600 // 60:02d}:{value % 60:02d}"
        if value >= 3600
        else f"{value // 60}:{value % 60:02d}"
    )


def table_row(job: JobRecord, p: Progress) -> list[Any]:
    step = "" if p.step is None else (f"{p.step}/{p.total}" if p.total else str(p.step))
    loss = "" if p.loss is None else f"{p.loss:.4f}"
    return [job.id, job.type, job.state, step, loss, _seconds(p.elapsed_s), _seconds(p.eta_s)]


def job_json(job: JobRecord, p: Progress) -> dict[str, Any]:
    """One job for the API: at least id, type, state, step, loss."""
    return {
        "id": job.id,
        "type": job.type,
        "state": job.state,
        "step": p.step,
        "total_steps": p.total,
        "loss": p.loss,
        "elapsed_s": p.elapsed_s,
        "eta_s": p.eta_s,
        "exit_code": job.exit_code,
        "error": job.error,
        "params": job.params,
        "executor": job.executor,
        "cluster_id": job.cluster_id,
        "out_dir": job.out_dir,
    }


def curve_points(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long-format points (step, value, series) for loss and learning rate; non-finite values are left out."""
    points = []
    for record in metrics:
        step = record.get("step")
        if not isinstance(step, int):
            continue
        for series in ("loss", "lr"):
            value = record.get(series)
            if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
                points.append({"step": step, "value": float(value), "series": series})
    return points
