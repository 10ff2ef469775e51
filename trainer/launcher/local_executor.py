"""The ``local`` executor: each job is a process group on this machine, started through ``job_process``.

Identity survives app restarts: a job is its process group leader's pid plus that process's start time (from
``/proc``), so a recycled pid is never mistaken for the job, and its exit code comes from the exit file the
wrapper writes. Cancel sends SIGTERM to the group (the trainer checkpoints and exits), then SIGKILL after a
grace period.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vision_common.paths import PROJECT_ROOT

EXIT_FILE = "exit.json"
DEFAULT_GRACE_S = 30.0


@dataclass(frozen=True)
class ProcessHandle:
    pid: int
    start_ticks: int | None
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int | None
    """The command's exit code; negative for a signal; None when the group was killed before it could say."""
    reason: str | None = None
    """How the executor saw the ending when it says more than the code (``Slurm state TIMEOUT``)."""


def process_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def is_alive(handle: ProcessHandle) -> bool:
    """The process still runs and is the same process (same start time), not a zombie."""
    ticks = process_start_ticks(handle.pid)
    if ticks is None or (handle.start_ticks is not None and ticks != handle.start_ticks):
        return False
    try:
        state = Path(f"/proc/{handle.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class LocalExecutor:
    name = "local"

    def __init__(self, workspace: Path, *, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.workspace = Path(workspace)
        self.grace_s = grace_s
        self._children: dict[int, subprocess.Popen] = {}  # jobs this process started: reaped by poll
        self._lock = threading.Lock()

    def submit(
        self, out_dir: Path, log_path: Path, argv: list[str], *, job_type: str = "", processes: int = 1
    ) -> ProcessHandle:
        """Start ``argv`` in a new session with its output appended to ``log_path`` (every type alike; a
        multi-process job's ``accelerate launch`` starts its own workers in that session)."""
        exit_file = out_dir / EXIT_FILE
        exit_file.unlink(missing_ok=True)  # a resumed job's previous ending is not this run's
        wrapper = [
            sys.executable,
            "-m",
            "trainer.launcher.job_process",
            "--exit-file",
            str(exit_file),
            "--",
            *argv,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                wrapper, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )  # fmt: skip
        with self._lock:
            self._children[child.pid] = child
        return ProcessHandle(child.pid, process_start_ticks(child.pid))

    def poll(self, handle: ProcessHandle, out_dir: Path) -> ExitStatus | None:
        """None while the job runs; its ``ExitStatus`` once it ended (also for a job started before a restart)."""
        with self._lock:
            child = self._children.get(handle.pid)
        if child is not None:
            if child.poll() is None:
                return None
            with self._lock:
                self._children.pop(handle.pid, None)
            code = read_exit_code(out_dir)
            # No exit record and the wrapper died of a signal (``kill -9`` of the group): that signal is the
            # job's ending. Only the wrapper's parent knows it; an app restarted since reports None.
            if code is None and child.returncode is not None and child.returncode < 0:
                code = child.returncode
            return ExitStatus(code)
        if is_alive(handle):
            return None
        return ExitStatus(read_exit_code(out_dir))

    def cancel(self, handle: ProcessHandle) -> None:
        """SIGTERM to the job's process group now, SIGKILL after the grace period if it is still there."""
        if not is_alive(handle):
            return
        _signal_group(handle.pid, signal.SIGTERM)
        timer = threading.Timer(self.grace_s, self._kill_if_alive, args=(handle,))
        timer.daemon = True
        timer.start()

    def _kill_if_alive(self, handle: ProcessHandle) -> None:
        if is_alive(handle):
            _signal_group(handle.pid, signal.SIGKILL)


def read_exit_code(out_dir: Path) -> int | None:
    try:
        return int(json.loads((out_dir / EXIT_FILE).read_text())["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _signal_group(pid: int, number: int) -> None:
    try:
        os.killpg(pid, number)
    except ProcessLookupError:
        pass


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes (for tests and shutdown)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
