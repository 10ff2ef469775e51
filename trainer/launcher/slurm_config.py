"""What the ``slurm`` executor asks Slurm for: each job type's sbatch resources, and the cluster-wide settings
(partition, a GPU cap for CPU-only clusters, a time limit override) that come from the app's flags.

Every job type runs one process on one node today (the trainer's CLIs are single-process; a multi-GPU run
needs ``accelerate launch`` in the job type's command first), so ``nodes`` is 1 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SlurmResources:
    """The sbatch resources of one job: ``--nodes``, ``--gpus-per-node``, ``--cpus-per-task``, ``--time``."""

    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    time_min: int = 60

    def __post_init__(self) -> None:
        for name in ("nodes", "cpus_per_task", "time_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"SlurmResources.{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise ValueError(f"SlurmResources.gpus_per_node must be >= 0, got {self.gpus_per_node}")


# Sized for the non-tiny presets on a GPU node (the tiny presets finish in minutes on either kind).
JOB_RESOURCES: dict[str, SlurmResources] = {
    "llava-stage1": SlurmResources(gpus_per_node=1, cpus_per_task=8, time_min=24 * 60),
    "llava-stage2": SlurmResources(gpus_per_node=1, cpus_per_task=8, time_min=24 * 60),
    "llava-eval": SlurmResources(gpus_per_node=1, cpus_per_task=4, time_min=2 * 60),
    "index-build": SlurmResources(gpus_per_node=1, cpus_per_task=8, time_min=4 * 60),
    "data-engine": SlurmResources(cpus_per_task=4, time_min=2 * 60),
    "recipe-synthworld": SlurmResources(gpus_per_node=1, cpus_per_task=8, time_min=4 * 60),
    "recipe-llava": SlurmResources(gpus_per_node=1, cpus_per_task=8, time_min=8 * 60),
    "react-customize": SlurmResources(gpus_per_node=1, cpus_per_task=8, time_min=24 * 60),
    "react-eval": SlurmResources(gpus_per_node=1, cpus_per_task=4, time_min=2 * 60),
}
DEFAULT_RESOURCES = SlurmResources()
# Slurm sends SIGTERM this long before the time limit, the same signal as a cancel, so a job that runs out of
# time checkpoints too (submitit's default, SIGUSR2, would kill the trainer outright); a sixth of the limit when
# the limit is short, so a short job is not told to stop as soon as it starts.
TIME_LIMIT_SIGNAL_S = 90


@dataclass(frozen=True)
class SlurmSettings:
    partition: str = ""
    """``--partition``; empty: the cluster's default partition."""
    gpus_per_node: int | None = None
    """Overrides every job type's GPU request (0 on a CPU-only cluster); None: each type's own."""
    time_min: int | None = None
    """Overrides every job type's time limit (minutes); None: each type's own."""
    cpus_per_task: int | None = None
    """Overrides every job type's CPU request (nodes with fewer cores than a type asks for); None: each type's."""

    def __post_init__(self) -> None:
        if self.gpus_per_node is not None and self.gpus_per_node < 0:
            raise ValueError(f"slurm gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if self.time_min is not None and self.time_min < 1:
            raise ValueError(f"slurm time_min must be >= 1, got {self.time_min}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise ValueError(f"slurm cpus_per_task must be >= 1, got {self.cpus_per_task}")

    def resources_for(self, job_type: str) -> SlurmResources:
        resources = JOB_RESOURCES.get(job_type, DEFAULT_RESOURCES)
        if self.gpus_per_node is not None:
            resources = replace(resources, gpus_per_node=self.gpus_per_node)
        if self.time_min is not None:
            resources = replace(resources, time_min=self.time_min)
        if self.cpus_per_task is not None:
            resources = replace(resources, cpus_per_task=self.cpus_per_task)
        return resources

    def sbatch_parameters(self, job_type: str, processes: int = 1) -> dict[str, object]:
        """``submitit.SlurmExecutor.update_parameters`` keywords for one job of ``job_type``; a job that runs
        ``processes`` training processes (one per GPU) asks for at least that many GPUs where it asks for any."""
        r = self.resources_for(job_type)
        if r.gpus_per_node and processes > r.gpus_per_node:
            r = replace(r, gpus_per_node=processes)
        parameters: dict[str, object] = {
            "nodes": r.nodes, "ntasks_per_node": 1, "cpus_per_task": r.cpus_per_task, "time": r.time_min,
            "job_name": f"sv-{job_type}", "stderr_to_stdout": True,
            "additional_parameters": {"signal": f"TERM@{min(TIME_LIMIT_SIGNAL_S, r.time_min * 60 // 6)}"},
        }  # fmt: skip
        if r.gpus_per_node:
            parameters["gpus_per_node"] = r.gpus_per_node
        if self.partition:
            parameters["partition"] = self.partition
        return parameters
