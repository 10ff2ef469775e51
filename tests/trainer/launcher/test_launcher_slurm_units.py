"""The ``slurm`` executor's pure parts, without a cluster: reading Slurm's state and exit codes, the sbatch
resources each job type asks for and the overrides from the app's flags, and the executor being offered only
where ``sbatch`` is on PATH."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.trainer.launcher.test_launcher_core import FAKE
from trainer.launcher.job_types import JOB_TYPES
from trainer.launcher.manager import JobManager
from trainer.launcher.settings import add_launcher_arguments, launcher_settings_from_args
from trainer.launcher.slurm_config import JOB_RESOURCES, SlurmResources, SlurmSettings
from trainer.launcher.slurm_executor import slurm_available
from trainer.launcher.slurm_state import (
    SlurmJobState,
    base_state,
    parse_exit_code,
    parse_sacct,
    parse_scontrol,
)

SCONTROL_LINES = (
    "JobId=41 JobName=sv-fake UserId=root(0) JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:03\n"
    "JobId=42 JobName=sv-fake UserId=root(0) JobState=CANCELLED Reason=None Dependency=(null) ExitCode=0:15\n"
)


def test_scontrol_and_sacct_output_give_the_state_and_exit_code():
    assert parse_scontrol(SCONTROL_LINES, "41") == SlurmJobState("RUNNING", 0)
    assert parse_scontrol(SCONTROL_LINES, "42") == SlurmJobState("CANCELLED", -15)
    assert parse_scontrol(SCONTROL_LINES, "4") is None  # a prefix of another id is not that job
    assert not parse_scontrol(SCONTROL_LINES, "41").ended and parse_scontrol(SCONTROL_LINES, "42").ended
    sacct = "7|COMPLETED|0:0\n8|CANCELLED by 0|0:15\n9|FAILED|3:0\n"
    assert parse_sacct(sacct, "8") == SlurmJobState("CANCELLED", -15)
    assert parse_sacct(sacct, "9") == SlurmJobState("FAILED", 3)
    assert parse_sacct(sacct, "10") is None
    assert base_state("RUNNING+") == "RUNNING" and base_state("timeout") == "TIMEOUT"
    assert parse_exit_code("143:0") == 143 and parse_exit_code("0:9") == -9 and parse_exit_code("n/a") is None
    assert SlurmJobState("TIMEOUT", 0).ended and not SlurmJobState("COMPLETING", 0).ended
    pending = "JobId=43 JobName=sv-fake JobState=PENDING Reason=Resources Dependency=(null) ExitCode=0:0"
    assert parse_scontrol(pending, "43").describe() == "PENDING (Resources)"
    assert parse_scontrol(SCONTROL_LINES, "41").describe() == "RUNNING"  # Reason=None is no reason


def test_each_job_type_asks_for_its_resources_and_the_flags_override_them():
    assert set(JOB_RESOURCES) == set(JOB_TYPES)  # every registered type has its sbatch resources
    default = SlurmSettings()
    stage2 = default.sbatch_parameters("llava-stage2")
    assert stage2 == {"nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 8, "time": 24 * 60,
                      "job_name": "sv-llava-stage2", "stderr_to_stdout": True, "gpus_per_node": 1,
                      "additional_parameters": {"signal": "TERM@90"}}  # fmt: skip
    assert "gpus_per_node" not in default.sbatch_parameters("data-engine")
    # A 4-process job asks for 4 GPUs; a CPU-only setting (0 GPUs) stays without any.
    assert default.sbatch_parameters("llava-stage2", processes=4)["gpus_per_node"] == 4
    assert "gpus_per_node" not in SlurmSettings(gpus_per_node=0).sbatch_parameters(
        "llava-stage2", processes=4
    )
    cpu_only = SlurmSettings(partition="debug", gpus_per_node=0, time_min=30)
    params = cpu_only.sbatch_parameters("llava-stage2")
    assert "gpus_per_node" not in params and params["time"] == 30 and params["partition"] == "debug"
    assert params["additional_parameters"] == {"signal": "TERM@90"}  # 90 s before the end of 30 min
    assert SlurmSettings(time_min=2).sbatch_parameters("fake")["additional_parameters"] == {
        "signal": "TERM@20"
    }
    assert cpu_only.resources_for("an-unlisted-type") == SlurmResources(time_min=30)
    assert SlurmSettings(cpus_per_task=2).resources_for("llava-stage2").cpus_per_task == 2
    with pytest.raises(ValueError, match="gpus_per_node must be >= 0"):
        SlurmSettings(gpus_per_node=-1)
    with pytest.raises(ValueError, match="cpus_per_task must be >= 1"):
        SlurmResources(cpus_per_task=0)


def test_the_apps_flags_reach_the_slurm_settings():
    parser = argparse.ArgumentParser()
    add_launcher_arguments(parser)
    args = parser.parse_args(
        [
            "--slurm-partition",
            "gpu",
            "--slurm-gpus-per-node",
            "0",
            "--slurm-time-min",
            "90",
            "--slurm-cpus-per-task",
            "2",
        ]
    )
    settings = launcher_settings_from_args(args, loopback_only=True)
    assert settings.slurm == SlurmSettings(partition="gpu", gpus_per_node=0, time_min=90, cpus_per_task=2)


def test_the_slurm_executor_is_offered_only_where_sbatch_is_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert slurm_available() == "sbatch is not on PATH"
    mgr = JobManager(tmp_path / "ws", job_types={"fake": FAKE})
    assert list(mgr.executors) == ["local"]
    with pytest.raises(ValueError, match="executor 'slurm' is not available here: sbatch is not on PATH"):
        mgr.start("fake", {}, executor="slurm")
    with pytest.raises(ValueError, match="unknown executor 'ray'"):
        mgr.start("fake", {}, executor="ray")

    fake_sbatch = Path(tmp_path / "sbatch")
    fake_sbatch.write_text("#!/bin/sh\nexit 1\n")
    fake_sbatch.chmod(0o755)
    assert slurm_available() is None  # submitit is a dev dependency, so only sbatch decided
    assert list(JobManager(tmp_path / "ws2", job_types={"fake": FAKE}).executors) == ["local", "slurm"]


def test_an_app_without_sbatch_leaves_a_running_slurm_job_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # this app cannot reach Slurm; another app on the workspace can
    mgr = JobManager(tmp_path / "ws", job_types={"fake": FAKE})
    slurm_job = mgr.registry.create("fake", {"steps": 3, "sleep": 0.0, "fail": False}, "slurm")
    mgr.registry.transition(slurm_job.id, "running", expect="queued")
    mgr.registry.set_cluster_id(slurm_job.id, "12345")
    local_job = mgr.start("fake", {"steps": 1, "sleep": 0.0})
    mgr.reattach()
    mgr.tick()  # starts the local job and does not stumble over the Slurm one
    assert mgr.registry.get(slurm_job.id).state == "running"
    assert mgr.registry.get(local_job.id).pid is not None
    with pytest.raises(
        ValueError, match="runs on 'slurm', which is not available here: sbatch is not on PATH"
    ):
        mgr.cancel(slurm_job.id)
    assert not mgr.registry.get(slurm_job.id).cancel_requested
