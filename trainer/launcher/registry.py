"""The job registry: one SQLite database (WAL) under the workspace, shared by every app process.

Every state change is one ``BEGIN IMMEDIATE`` transaction that checks the job's current state, so two app
processes on one registry never both start, finish or cancel the same job, and no row is lost or duplicated.

States: ``queued -> running -> succeeded | failed | cancelled | interrupted``; ``queued -> cancelled``; a
stopped job (``failed``, ``cancelled``, ``interrupted``) can be queued again to resume from its checkpoint.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
STOPPED: tuple[JobState, ...] = ("failed", "cancelled", "interrupted")
FINAL: tuple[JobState, ...] = ("succeeded", *STOPPED)
ALLOWED: dict[JobState, tuple[JobState, ...]] = {
    "queued": ("running", "cancelled"),
    "running": FINAL,
    "succeeded": (),
    "failed": ("queued",),
    "cancelled": ("queued",),
    "interrupted": ("queued",),
}
DEFAULT_MAX_QUEUED = 16
# Another process holding the write lock (a transition takes milliseconds) is waited for this long.
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    executor TEXT NOT NULL,
    pid INTEGER,
    pid_start INTEGER,
    cluster_id TEXT,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    exit_code INTEGER,
    out_dir TEXT NOT NULL,
    log_path TEXT NOT NULL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    resume INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


class RegistryError(RuntimeError):
    """A registry request that cannot be honoured; the message says why (unknown id, full queue, bad state)."""


class QueueFullError(RegistryError):
    """The cap on queued jobs is reached."""


class InvalidTransitionError(RegistryError):
    """A state change the state machine does not allow from the job's current state."""


@dataclass(frozen=True)
class JobRecord:
    id: str
    type: str
    params: dict[str, Any]
    state: JobState
    executor: str
    pid: int | None
    pid_start: int | None
    cluster_id: str | None
    created: float
    started: float | None
    ended: float | None
    exit_code: int | None
    out_dir: str
    log_path: str
    error: str | None
    cancel_requested: bool
    attempts: int
    resume: bool

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        values = dict(row)
        values["params"] = json.loads(values["params"])
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["resume"] = bool(values["resume"])
        return cls(**values)


class JobRegistry:
    """Jobs in ``<workspace>/jobs.sqlite``. One connection per call: safe across threads and processes."""

    def __init__(self, workspace: Path, *, max_queued: int = DEFAULT_MAX_QUEUED) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / "jobs.sqlite"
        self.max_queued = max_queued
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(self, job_type: str, params: dict[str, Any], executor: str) -> JobRecord:
        """Insert a ``queued`` job with a fresh id and its folder ``jobs/<id>/`` (created here, exclusively)."""
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{job_type}-{uuid.uuid4().hex[:6]}"
        out_dir = f"jobs/{job_id}"
        with self._transaction() as db:
            (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()
            if queued >= self.max_queued:
                raise QueueFullError(
                    f"the queue is full ({queued} jobs waiting, at most {self.max_queued}); wait for one to "
                    "start or cancel one"
                )
            (self.workspace / out_dir).mkdir(parents=True, exist_ok=False)  # a clash fails, never shares
            db.execute(
                "INSERT INTO jobs (id, type, params, state, executor, created, out_dir, log_path) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, job_type, json.dumps(params, sort_keys=True), executor, time.time(), out_dir,
                 f"{out_dir}/job.log"),
            )  # fmt: skip
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no job with id {job_id!r}")
        return JobRecord.from_row(row)

    def jobs(self, states: tuple[JobState, ...] = JOB_STATES) -> list[JobRecord]:
        """Jobs in ``states``, oldest first."""
        marks = ",".join("?" * len(states))
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created, id", states)
            return [JobRecord.from_row(row) for row in rows.fetchall()]

    def transition(
        self, job_id: str, to: JobState, *, expect: JobState | None = None, **fields: Any
    ) -> JobRecord:
        """Move ``job_id`` to ``to`` (and set ``fields``) if the state machine allows it from its current state
        (and it is ``expect``, when given); otherwise ``InvalidTransitionError``."""
        allowed_fields = {"pid", "pid_start", "cluster_id", "started", "ended", "exit_code", "error", "attempts",
                          "resume", "cancel_requested"}  # fmt: skip
        unknown = set(fields) - allowed_fields
        if unknown:
            raise ValueError(f"transition: unknown fields {sorted(unknown)}")
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise RegistryError(f"no job with id {job_id!r}")
            current = row["state"]
            if (expect is not None and current != expect) or to not in ALLOWED[current]:
                raise InvalidTransitionError(f"job {job_id} is {current}; it cannot become {to}")
            if to == "queued":
                (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()
                if queued >= self.max_queued:
                    raise QueueFullError(f"the queue is full (at most {self.max_queued} jobs waiting)")
            assignments = ", ".join(f"{name} = ?" for name in ("state", *fields))
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (to, *fields.values(), job_id))
        return self.get(job_id)

    def set_process(self, job_id: str, pid: int, pid_start: int | None) -> None:
        """Record the process of a job that is ``running`` (a field update, not a state change)."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET pid = ?, pid_start = ? WHERE id = ? AND state = 'running'",
                       (pid, pid_start, job_id))  # fmt: skip

    def set_cluster_id(self, job_id: str, cluster_id: str) -> None:
        """Record the cluster's id (the Slurm job id) of a job that is ``running``."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET cluster_id = ? WHERE id = ? AND state = 'running'", (cluster_id, job_id)
            )

    def request_cancel(self, job_id: str) -> JobRecord:
        """Mark a running job for cancellation (the executor signals it; its exit makes it ``cancelled``)."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise RegistryError(f"no job with id {job_id!r}")
            if row["state"] != "running":
                raise InvalidTransitionError(f"job {job_id} is {row['state']}, not running")
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self.get(job_id)

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job's row (its folder is the caller's to remove, inside the workspace)."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise RegistryError(f"no job with id {job_id!r}")
            if row["state"] in ("queued", "running"):
                raise InvalidTransitionError(f"job {job_id} is {row['state']}: cancel it before deleting it")
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.from_row(row)
