"""The ``slurm`` executor: a job's argument list submitted with sbatch through submitit, watched and cancelled
through Slurm.

The same command the ``local`` executor runs is wrapped in ``trainer.launcher.job_process`` (which appends the
command's output to the job's log and writes its exit code to ``exit.json`` in the job's folder) and handed to
``submitit.SlurmExecutor`` as a ``submitit.helpers.CommandFunction``: submitit writes the sbatch script with
the job type's resources (``slurm_config``), submits it and keeps its own files in ``<job>/slurm/``. The Slurm
job id is the job's ``cluster_id`` in the registry, so an app that restarts finds the job again.

State comes from Slurm (``scontrol show job``, else ``sacct``); the exit code is the command's own from
``exit.json`` when it wrote one (Slurm's batch exit code is submitit's, not the trainer's), else Slurm's. Cancel
is ``scancel --signal=TERM`` (every process of the job step gets SIGTERM: the trainer checkpoints and exits
143, exactly as with the local executor), then a plain ``scancel`` after the grace period.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from trainer.launcher.local_executor import DEFAULT_GRACE_S, EXIT_FILE, ExitStatus, read_exit_code
from trainer.launcher.slurm_config import SlurmSettings
from trainer.launcher.slurm_state import SlurmUnavailableError, query_job
from vision_common.paths import PROJECT_ROOT

SLURM_FOLDER = "slurm"
SCANCEL_TIMEOUT_S = 30.0


class SlurmSubmitError(OSError):
    """sbatch refused the job (unknown partition, resources the cluster does not have ...); says why."""


@dataclass(frozen=True)
class SlurmHandle:
    job_id: str


def slurm_available() -> str | None:
    """None when jobs can be submitted to Slurm from here; otherwise why not."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    try:
        import submitit  # noqa: F401 - an optional extra (pip install '.[slurm]'): probe, do not use
    except ImportError:
        return "submitit is not installed (pip install '.[slurm]')"
    return None


class SlurmExecutor:
    name = "slurm"

    def __init__(
        self, workspace: Path, settings: SlurmSettings | None = None, *, grace_s: float = DEFAULT_GRACE_S
    ) -> None:
        self.workspace = Path(workspace)
        self.settings = settings or SlurmSettings()
        self.grace_s = grace_s

    def submit(
        self, out_dir: Path, log_path: Path, argv: list[str], *, job_type: str = "", processes: int = 1
    ) -> SlurmHandle:
        """sbatch ``argv`` with ``job_type``'s resources (GPUs for ``processes``); output appended to ``log_path``."""
        # submitit is the optional `slurm` extra: imported only when a job actually goes to Slurm.
        import submitit

        exit_file = out_dir / EXIT_FILE
        exit_file.unlink(missing_ok=True)  # a resumed job's previous ending is not this run's
        wrapped = [sys.executable, "-m", "trainer.launcher.job_process", "--exit-file", str(exit_file),
                   "--log", str(log_path), "--", *argv]  # fmt: skip
        executor = submitit.SlurmExecutor(folder=out_dir / SLURM_FOLDER)
        executor.update_parameters(**self.settings.sbatch_parameters(job_type, processes))
        command = submitit.helpers.CommandFunction(wrapped, cwd=PROJECT_ROOT, verbose=True)
        try:
            job = executor.submit(command)
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as exc:
            detail = getattr(exc, "stderr", None) or getattr(exc, "output", None) or exc
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            raise SlurmSubmitError(f"sbatch refused the job: {str(detail).strip()}") from exc
        return SlurmHandle(str(job.job_id))

    def poll(self, handle: SlurmHandle, out_dir: Path) -> ExitStatus | None:
        """None while Slurm runs (or queues) the job, or cannot be asked; its ``ExitStatus`` once it ended."""
        try:
            state = query_job(handle.job_id)
        except SlurmUnavailableError:
            return None  # the controller is down or restarting: the job is not known to have ended
        own_code = read_exit_code(out_dir)
        if state is None:
            reason = f"Slurm no longer knows job {handle.job_id}"
            return ExitStatus(own_code, reason)
        if not state.ended:
            return None
        code = own_code if own_code is not None else state.exit_code
        if state.state == "CANCELLED" and own_code is None:
            code = None  # cancelled before the command could say how it ended (queued, or killed)
        return ExitStatus(code, None if state.state == "COMPLETED" else f"Slurm state {state.state}")

    def describe(self, handle: SlurmHandle) -> str | None:
        """Slurm's view of a job the launcher calls ``running``: ``Slurm job 12: PENDING (Resources)``."""
        try:
            state = query_job(handle.job_id)
        except SlurmUnavailableError as exc:
            return f"Slurm job {handle.job_id}: the controller does not answer ({exc})"
        return None if state is None else f"Slurm job {handle.job_id}: {state.describe()}"

    def cancel(self, handle: SlurmHandle) -> None:
        """SIGTERM to the running job's processes now, ``scancel`` after the grace period; a queued job at once."""
        try:
            state = query_job(handle.job_id)
        except SlurmUnavailableError:
            state = None
        if state is not None and state.ended:
            return
        if state is not None and state.state == "PENDING":
            _scancel(handle.job_id)
            return
        _scancel(handle.job_id, "--signal=TERM")
        timer = threading.Timer(self.grace_s, _scancel, args=(handle.job_id,))
        timer.daemon = True
        timer.start()


def _scancel(job_id: str, *flags: str) -> None:
    try:
        subprocess.run(
            ["scancel", *flags, job_id], capture_output=True, timeout=SCANCEL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        pass  # the next tick sees the job still running; Cancel can be pressed again
