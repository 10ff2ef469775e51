"""``JobManager``: start, watch, cancel, resume and delete jobs; the one object the tab and the API call.

``tick()`` is the whole scheduler and is safe to call from any number of threads and app processes at once: it
finalises jobs whose process ended, then claims queued jobs (a ``queued -> running`` transition only one caller
wins) while fewer than ``concurrency`` run. ``reattach()`` runs once when an app starts: a job whose process is
still alive stays ``running`` (and is watched again), a job that ended while no app watched gets its real exit
code, and one that vanished without an exit record is ``interrupted`` with the tail of its log.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer.launcher.job_types import JOB_TYPES, JobParamsError, JobType
from trainer.launcher.local_executor import ExitStatus, LocalExecutor, ProcessHandle
from trainer.launcher.registry import InvalidTransitionError, JobRecord, JobRegistry
from trainer.launcher.slurm_config import SlurmSettings
from trainer.launcher.slurm_executor import SlurmExecutor, SlurmHandle, slurm_available
from trainer.launcher.workspace import confined, is_inside

# 128 + SIGTERM: how the trainer's CLIs exit after checkpointing on a cancel request.
EXIT_CANCELLED = 143
LOG_TAIL_LINES = 20


class JobManager:
    def __init__(
        self,
        workspace: Path,
        *,
        concurrency: int = 1,
        max_queued: int = 16,
        grace_s: float = 30.0,
        job_types: Mapping[str, JobType] = JOB_TYPES,
        slurm: SlurmSettings | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.workspace = Path(workspace).resolve()
        self.registry = JobRegistry(self.workspace, max_queued=max_queued)
        self.concurrency = concurrency
        self.executors: dict[str, LocalExecutor | SlurmExecutor] = {
            "local": LocalExecutor(self.workspace, grace_s=grace_s)
        }
        # Why an executor is missing here (``slurm``: no sbatch on PATH, or submitit not installed).
        self.unavailable: dict[str, str] = {}
        slurm_missing = slurm_available()
        if slurm_missing is None:
            self.executors["slurm"] = SlurmExecutor(self.workspace, slurm, grace_s=grace_s)
        else:
            self.unavailable["slurm"] = slurm_missing
        self.job_types = dict(job_types)

    def job_type(self, name: str) -> JobType:
        if name not in self.job_types:
            raise JobParamsError(f"unknown job type {name!r}; registered types: {sorted(self.job_types)}")
        return self.job_types[name]

    # -- requests -------------------------------------------------------------------------------------------

    def start(self, job_type: str, raw_params: dict[str, Any], executor: str = "local") -> JobRecord:
        """Validate and queue a job (``JobParamsError`` / ``QueueFullError`` say what is wrong); ``tick`` runs it."""
        if executor in self.unavailable:
            raise ValueError(f"executor {executor!r} is not available here: {self.unavailable[executor]}")
        if executor not in self.executors:
            raise ValueError(f"unknown executor {executor!r}; available: {sorted(self.executors)}")
        params = self.job_type(job_type).params_from(raw_params, workspace=self.workspace)
        return self.registry.create(job_type, asdict(params), executor)

    def cancel(self, job_id: str) -> JobRecord:
        """A queued job is cancelled at once; a running one gets SIGTERM (it checkpoints), SIGKILL after grace."""
        job = self.registry.get(job_id)
        if job.state == "queued":
            return self.registry.transition(job_id, "cancelled", expect="queued", ended=time.time())
        if job.state == "running":
            self._executor(job)  # an executor this app cannot reach says so before the request is recorded
        job = self.registry.request_cancel(job_id)
        handle = self._handle(job)
        if handle is not None:
            self._executor(job).cancel(handle)  # type: ignore[arg-type]  # each executor gets its own handle
        return job

    def resume(self, job_id: str) -> JobRecord:
        """Queue a stopped job again with the same parameters; resumable types continue from their checkpoint."""
        job = self.registry.get(job_id)
        if job.state not in ("failed", "cancelled", "interrupted"):
            raise InvalidTransitionError(f"job {job_id} is {job.state}; only stopped jobs can be resumed")
        return self.registry.transition(
            job_id, "queued", resume=int(self.job_type(job.type).resumable), cancel_requested=0, exit_code=None,
            error=None, ended=None,
        )  # fmt: skip

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job and its folder (only ever a folder inside the workspace)."""
        job = self.registry.delete(job_id)
        folder = confined(self.workspace, job.out_dir, field="out_dir")
        if folder != self.workspace and is_inside(self.workspace, folder) and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
        return job

    # -- scheduling -----------------------------------------------------------------------------------------

    def tick(self) -> list[JobRecord]:
        """Finalise ended jobs, start queued ones up to the concurrency limit; returns every job."""
        for job in self.registry.jobs(("running",)):
            handle = self._handle(job)
            if handle is None:
                continue  # claimed a moment ago by a tick that is starting its process
            if job.executor not in self.executors:
                continue  # a Slurm job seen from an app without sbatch: an app that has it watches it
            status = self._executor(job).poll(handle, self.job_dir(job))  # type: ignore[arg-type]
            if status is not None:
                self._finalise(job, status)
        # The concurrency limit is this machine's: jobs for a cluster go to its own queue at once (Slurm
        # schedules them), and do not hold back local ones.
        running = sum(1 for job in self.registry.jobs(("running",)) if job.executor == "local")
        for job in self.registry.jobs(("queued",)):
            if job.executor == "local" and running >= self.concurrency:
                continue
            if self._launch(job) and job.executor == "local":
                running += 1
        return self.registry.jobs()

    def reattach(self) -> list[JobRecord]:
        """At app start: re-watch live jobs, finalise or mark ``interrupted`` the rest; queued jobs stay queued."""
        for job in self.registry.jobs(("running",)):
            status, handle = None, self._handle(job)
            if handle is not None:
                if job.executor not in self.executors:
                    continue  # its executor is not available in this app (no sbatch here): leave it alone
                status = self._executor(job).poll(handle, self.job_dir(job))  # type: ignore[arg-type]
                if status is None:
                    continue  # still running: the next tick watches it again
            if status is None or status.exit_code is None:
                tail, why = self.log_tail(job), f" ({status.reason})" if status and status.reason else ""
                self._end(
                    job,
                    "interrupted",
                    None,
                    f"the job stopped while no app watched it{why}; log tail:\n{tail}",
                )
            else:
                self._finalise(job, status)
        return self.registry.jobs()

    # -- reading --------------------------------------------------------------------------------------------

    def job_dir(self, job: JobRecord) -> Path:
        return confined(self.workspace, job.out_dir, field="out_dir")

    def run_dir(self, job: JobRecord) -> Path:
        """Where the job's command writes (``--out``): ``jobs/<id>/run``."""
        return self.job_dir(job) / "run"

    def log_tail(self, job: JobRecord, lines: int = LOG_TAIL_LINES) -> str:
        path = confined(self.workspace, job.log_path, field="log_path")
        try:
            with open(path, "rb") as log:
                log.seek(0, 2)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cluster_status(self, job: JobRecord) -> str | None:
        """What the cluster says about a running cluster job (``Slurm job 12: PENDING (Resources)``), else None."""
        handle = self._handle(job)
        if (
            job.state != "running"
            or not isinstance(handle, SlurmHandle)
            or job.executor not in self.executors
        ):
            return None
        return self.executors[job.executor].describe(handle)  # type: ignore[union-attr]  # only Slurm's have it

    def metrics(self, job: JobRecord) -> list[dict[str, Any]]:
        """The records of the run's ``metrics.jsonl`` (a line cut off mid-write is skipped)."""
        path = self.run_dir(job) / "metrics.jsonl"
        records = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    # -- internals ------------------------------------------------------------------------------------------

    def _executor(self, job: JobRecord) -> LocalExecutor | SlurmExecutor:
        if job.executor not in self.executors:
            raise ValueError(f"job {job.id} runs on {job.executor!r}, which is not available here: "
                             f"{self.unavailable.get(job.executor, 'unknown executor')}")  # fmt: skip
        return self.executors[job.executor]

    def _handle(self, job: JobRecord) -> ProcessHandle | SlurmHandle | None:
        """The running job's process or Slurm job; None while the tick that claimed it is still submitting it."""
        if job.cluster_id is not None:
            return SlurmHandle(job.cluster_id)
        return None if job.pid is None else ProcessHandle(job.pid, job.pid_start)

    def _launch(self, job: JobRecord) -> bool:
        job_type = self.job_type(job.type)
        params = job_type.params_type(**job.params)
        try:
            # A resumed job's previous process / Slurm id is cleared, so no tick watches the old one meanwhile.
            claimed = self.registry.transition(job.id, "running", expect="queued", started=time.time(),
                                               attempts=job.attempts + 1, pid=None, pid_start=None,
                                               cluster_id=None)  # fmt: skip
        except InvalidTransitionError:
            return False  # another process claimed it first
        argv = job_type.argv(params, self.run_dir(claimed), resume=claimed.resume)
        log_path = confined(self.workspace, claimed.log_path, field="log_path")
        try:
            executor = self._executor(claimed)
            processes = getattr(params, "processes", 1)
            handle = executor.submit(
                self.job_dir(claimed), log_path, argv, job_type=claimed.type, processes=processes
            )
        except (OSError, ValueError) as exc:
            self._end(claimed, "failed", None, f"could not start: {exc}")
            return False
        if isinstance(handle, SlurmHandle):
            self.registry.set_cluster_id(claimed.id, handle.job_id)
        else:
            self.registry.set_process(claimed.id, handle.pid, handle.start_ticks)
        return True

    def _finalise(self, job: JobRecord, status: ExitStatus) -> None:
        code = status.exit_code
        if code == 0:
            self._end(job, "succeeded", 0, None)
        elif job.cancel_requested:
            self._end(job, "cancelled", code, None)
        else:
            how = "was killed (no exit record)" if code is None else f"exited with status {code}"
            why = f" ({status.reason})" if status.reason else ""
            self._end(job, "failed", code, f"the job {how}{why}; log tail:\n{self.log_tail(job)}")

    def _end(self, job: JobRecord, state: str, code: int | None, error: str | None) -> None:
        try:
            self.registry.transition(
                job.id, state, expect="running", ended=time.time(), exit_code=code, error=error
            )
        except InvalidTransitionError:
            pass  # another app process finalised it first
