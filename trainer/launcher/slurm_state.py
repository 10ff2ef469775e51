"""A Slurm job's state and exit code, read from ``scontrol show job`` (the controller keeps a finished job there
for ``MinJobAge`` seconds), falling back to ``sacct`` where the cluster keeps accounting.

The parsers are pure functions over the commands' text; ``query_job`` is the only part that runs them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

# States after which the job will not run again (``squeue --help``: JOB STATE CODES).
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
     "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
)  # fmt: skip
QUERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SlurmJobState:
    state: str
    """Slurm's base state (``RUNNING``, ``COMPLETED``, ``CANCELLED`` ...), without ``by <uid>`` or flags."""
    exit_code: int | None
    """The batch script's exit code; ``-signal`` when a signal ended it; None when Slurm does not say."""
    reason: str | None = None
    """Why a job waits or ended (``Resources``, ``Priority``, ``NonZeroExitCode``); None when Slurm gives none."""

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES

    def describe(self) -> str:
        """``PENDING (Resources)``, ``RUNNING``: what the tab shows next to a job Slurm holds."""
        return f"{self.state} ({self.reason})" if self.reason else self.state


def base_state(text: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``RUNNING+`` -> ``RUNNING``."""
    return text.strip().split(" ")[0].rstrip("+").upper()


def parse_exit_code(text: str) -> int | None:
    """Slurm's ``code:signal`` -> the code, or ``-signal`` when a signal ended the job."""
    code, _, signal = text.strip().partition(":")
    try:
        number, by_signal = int(code), int(signal or 0)
    except ValueError:
        return None
    return -by_signal if by_signal else number


def parse_scontrol(text: str, job_id: str) -> SlurmJobState | None:
    """The state in ``scontrol show job -o JOB_ID`` output (one ``Key=Value ...`` line per job)."""
    for line in text.splitlines():
        fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
        if fields.get("JobId") == job_id and "JobState" in fields:
            reason = fields.get("Reason")
            return SlurmJobState(
                base_state(fields["JobState"]),
                parse_exit_code(fields.get("ExitCode", "")),
                None if reason in (None, "None", "(null)") else reason,
            )
    return None


def parse_sacct(text: str, job_id: str) -> SlurmJobState | None:
    """The state in ``sacct -n -P -X -o JobID,State,ExitCode -j JOB_ID`` output."""
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 3 and parts[0] == job_id:
            return SlurmJobState(base_state(parts[1]), parse_exit_code(parts[2]))
    return None


class SlurmUnavailableError(RuntimeError):
    """The controller cannot be asked right now (down, restarting, unreachable): the job's state is unknown."""


def query_job(job_id: str) -> SlurmJobState | None:
    """The job's state from the controller, else from accounting; None when neither knows the job (any more).

    ``SlurmUnavailableError`` when the controller does not answer, so a job is never taken for gone because
    its controller restarts.
    """
    code, out, err = _run(["scontrol", "show", "job", "-o", job_id])
    if code == 0:
        state = parse_scontrol(out, job_id)
        if state is not None:
            return state
    elif "invalid job id" not in err.lower():
        raise SlurmUnavailableError(
            f"scontrol show job {job_id} failed: {err.strip() or f'exit code {code}'}"
        )
    code, out, _ = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", job_id])
    return parse_sacct(out, job_id) if code == 0 else None


def _run(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a Slurm command; 127 when it cannot run at all."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return done.returncode, done.stdout, done.stderr
