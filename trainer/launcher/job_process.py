"""``python -m trainer.launcher.job_process --exit-file F -- ARGV...``: run one job command and record how it ended.

The launcher starts every local job through this wrapper, in a new session (its own process group). The wrapper
ignores SIGTERM itself (the executor signals the whole group, and the job checkpoints and exits on it), waits for
the command, and writes ``{"exit_code": N}`` to the exit file atomically. The exit file outlives the app: an app
that restarts while a job runs, or after it ended, still learns its exit code. A SIGKILL of the whole group
leaves no exit file, which the executor reports as killed. The ``slurm`` executor runs the same wrapper inside
the Slurm job, with ``--log`` so the command's output lands in the job's log rather than in submitit's.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from vision_common.atomic import atomic_write_text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.launcher.job_process", description=__doc__)
    parser.add_argument("--exit-file", type=Path, required=True, help="where the exit code is written")
    parser.add_argument("--log", type=Path, help="append the command's output here (default: this process's)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the job's argument list")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    signal.signal(
        signal.SIGTERM, signal.SIG_IGN
    )  # the job gets the group's SIGTERM; the wrapper waits for it
    # Under Slurm the job's log is the launcher's log file, not the step's output (that is submitit's).
    log = open(args.log, "ab") if args.log else None  # noqa: SIM115 - closed below, after the command ends
    try:
        child = subprocess.Popen(command, restore_signals=True, preexec_fn=_default_sigterm, stdout=log,
                                 stderr=subprocess.STDOUT if log else None)  # fmt: skip
    except OSError as exc:
        print(f"launcher: cannot start {command[0]}: {exc}", file=sys.stderr, flush=True)
        atomic_write_text(args.exit_file, json.dumps({"exit_code": 127}))
        return 127
    finally:
        if log is not None:
            log.close()  # the child holds its own descriptor
    code = child.wait()
    atomic_write_text(args.exit_file, json.dumps({"exit_code": code}))
    return 0 if code == 0 else 1


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the job itself must see SIGTERM (it checkpoints on it)


if __name__ == "__main__":
    raise SystemExit(main())
