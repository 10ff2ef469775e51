"""The launcher tab's settings and flags: where the workspace is, and whether the launcher may run at all.

The launcher starts processes on this machine, so it is on by default only when the app listens on loopback;
bound to another address (or on Hugging Face Spaces) it is off unless a launcher token is configured, and the tab
says why it is off.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from trainer.launcher.slurm_config import SlurmSettings
from vision_common.paths import PROJECT_ROOT

DEFAULT_WORKSPACE = PROJECT_ROOT / "runs"


@dataclass(frozen=True)
class LauncherSettings:
    workspace: Path = DEFAULT_WORKSPACE
    """Root of the job registry (``jobs.sqlite``) and every job's folder; nothing is written outside it."""
    enabled: bool = True
    disabled_reason: str = ""
    token: str | None = None
    """When set, starting, cancelling, resuming and deleting jobs need this token."""
    concurrency: int = 1
    """Jobs running at once; the rest wait in the queue."""
    max_queued: int = 16
    refresh_s: float = 2.0
    slurm: SlurmSettings = SlurmSettings()
    """What the ``slurm`` executor asks for (available where ``sbatch`` is on PATH)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_queued < 1:
            raise ValueError("launcher concurrency and max_queued must be >= 1")
        if self.refresh_s <= 0:
            raise ValueError("launcher refresh_s must be > 0")


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training launcher")
    group.add_argument(
        "--workspace",
        type=Path,
        default=Path(os.environ.get("APP_WORKSPACE", DEFAULT_WORKSPACE)),
        help="launcher workspace: job registry and job folders (default runs/) [APP_WORKSPACE]",
    )
    group.add_argument(
        "--launcher-token",
        default=os.environ.get("APP_LAUNCHER_TOKEN"),
        help="token that allows the launcher when the app listens beyond loopback [APP_LAUNCHER_TOKEN]",
    )
    group.add_argument(
        "--launcher-concurrency", type=int, default=1, help="training jobs running at once (default 1)"
    )
    group.add_argument(
        "--slurm-partition",
        default=os.environ.get("APP_SLURM_PARTITION", ""),
        help="Slurm partition of slurm-executor jobs (default: the cluster's) [APP_SLURM_PARTITION]",
    )
    group.add_argument(
        "--slurm-gpus-per-node",
        type=int,
        default=None,
        help="GPUs per node for every slurm job, overriding each job type's (0 on a CPU-only cluster)",
    )
    group.add_argument(
        "--slurm-time-min",
        type=int,
        default=None,
        help="time limit (minutes) for every slurm job, overriding each job type's",
    )
    group.add_argument(
        "--slurm-cpus-per-task",
        type=int,
        default=None,
        help="CPUs for every slurm job, overriding each job type's (nodes with fewer cores)",
    )


def launcher_settings_from_args(args: argparse.Namespace, *, loopback_only: bool) -> LauncherSettings:
    token = args.launcher_token or None
    if not loopback_only and token is None:
        return LauncherSettings(
            workspace=args.workspace,
            enabled=False,
            disabled_reason="The training launcher is off: the app listens beyond this machine and no launcher "
            "token is configured (set --launcher-token or APP_LAUNCHER_TOKEN, or bind to 127.0.0.1).",
        )
    # A namespace built without the Slurm flags (a caller with its own parser) means the cluster's defaults.
    slurm = SlurmSettings(
        partition=getattr(args, "slurm_partition", ""),
        gpus_per_node=getattr(args, "slurm_gpus_per_node", None),
        time_min=getattr(args, "slurm_time_min", None),
        cpus_per_task=getattr(args, "slurm_cpus_per_task", None),
    )
    return LauncherSettings(
        workspace=args.workspace, token=token, concurrency=args.launcher_concurrency, slurm=slurm
    )
