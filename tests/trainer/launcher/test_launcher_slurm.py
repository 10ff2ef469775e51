"""The ``slurm`` executor against a real Slurm (``scripts/slurm_single_node.sh``, started by ``.ci/run`` as root):
a job submitted through submitit runs, its metrics flow while it runs, it succeeds; a failing one shows its exit
code and log; Cancel goes through ``scancel --signal=TERM`` (the job checkpoints and ends ``cancelled``) and
Resume continues from the checkpoint; an app restarted while the Slurm job runs re-attaches to it; a job sbatch
refuses fails with sbatch's reason. Skipped, with the reason, where no Slurm is running."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.trainer.launcher.test_launcher_core import FAKE
from trainer.launcher.local_executor import wait_until
from trainer.launcher.manager import JobManager
from trainer.launcher.settings import LauncherSettings
from trainer.launcher.slurm_config import SlurmSettings
from trainer.launcher.slurm_executor import SLURM_FOLDER, slurm_available
from trainer.launcher.slurm_state import query_job
from trainer.launcher.tab import LauncherActions


def _slurm_missing() -> str | None:
    missing = slurm_available()
    if missing is not None:
        return missing
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer: {exc}"
    usable = [s for s in done.stdout.split() if s.rstrip("*~#").startswith(("idle", "mixed", "allocated"))]
    if done.returncode != 0 or not usable:
        return f"no Slurm node is up (sinfo: {(done.stdout + done.stderr).strip() or done.returncode})"
    return None


MISSING = _slurm_missing()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MISSING is not None,
        reason=f"no Slurm running here ({MISSING}); as root: bash scripts/slurm_single_node.sh",
    ),
]


def manager(tmp_path: Path, settings: SlurmSettings | None = None) -> JobManager:
    return JobManager(tmp_path / "ws", job_types={"fake": FAKE}, grace_s=5.0, slurm=settings)


def run_until(mgr: JobManager, job_id: str, states: tuple[str, ...], timeout: float = 120.0) -> None:
    assert wait_until(lambda: mgr.tick() and mgr.registry.get(job_id).state in states, timeout, 0.2), (
        mgr.registry.get(job_id),
        mgr.log_tail(mgr.registry.get(job_id)),
    )


def steps(mgr: JobManager, job_id: str) -> list[int]:
    return [r["step"] for r in mgr.metrics(mgr.registry.get(job_id))]


def test_a_tiny_job_runs_on_slurm_its_metrics_flow_and_it_succeeds(tmp_path):
    mgr = manager(tmp_path)
    assert "slurm" in mgr.executors
    job = mgr.start("fake", {"steps": 12, "sleep": 0.4}, executor="slurm")
    # Metrics arrive while Slurm still runs the job (not only once it ended).
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, job.id)) >= 2, 120, 0.2), mgr.log_tail(job)
    running = mgr.registry.get(job.id)
    assert running.state == "running" and running.cluster_id and running.cluster_id.isdigit()
    assert running.pid is None
    live = query_job(running.cluster_id)
    assert live is not None and live.state in ("RUNNING", "COMPLETING"), live
    run_until(mgr, job.id, ("succeeded",))
    done = mgr.registry.get(job.id)
    assert done.exit_code == 0 and done.error is None
    assert steps(mgr, job.id) == list(range(1, 13))
    assert "fake job done" in mgr.log_tail(done)
    assert query_job(done.cluster_id).state == "COMPLETED"
    # submitit's sbatch script and logs live in the job's folder, with the job type's resources.
    script = next((mgr.job_dir(done) / SLURM_FOLDER).glob("*_submission.sh")).read_text()
    for line in ("#SBATCH --nodes=1", "#SBATCH --cpus-per-task=1", "#SBATCH --time=60", "#SBATCH --signal=TERM@90",
                 "#SBATCH --job-name=sv-fake"):  # fmt: skip
        assert line in script, script


def test_a_failing_job_shows_its_exit_code_slurm_state_and_log(tmp_path):
    mgr = manager(tmp_path)
    job = mgr.start("fake", {"steps": 1, "fail": True}, executor="slurm")
    run_until(mgr, job.id, ("failed",))
    failed = mgr.registry.get(job.id)
    assert failed.exit_code == 3  # the command's own code, not submitit's
    assert "Slurm state FAILED" in failed.error and "failing on purpose" in failed.error


def test_cancel_goes_through_scancel_checkpoints_and_resume_continues(tmp_path):
    mgr = manager(tmp_path)
    job = mgr.start("fake", {"steps": 400, "sleep": 0.1}, executor="slurm")
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, job.id)) >= 3, 120, 0.2), mgr.log_tail(job)
    first_cluster_id = mgr.registry.get(job.id).cluster_id
    assert mgr.cancel(job.id).cancel_requested
    run_until(mgr, job.id, ("cancelled",), timeout=60)
    cancelled = mgr.registry.get(job.id)
    assert cancelled.exit_code == 143  # SIGTERM reached the trainer, which checkpointed: not SIGKILL
    step = json.loads((mgr.run_dir(cancelled) / "checkpoint.json").read_text())["step"]
    assert step >= 3 and steps(mgr, job.id)[-1] == step
    assert f"stopping at step {step} with a checkpoint" in mgr.log_tail(cancelled)
    assert query_job(first_cluster_id).ended

    mgr.resume(job.id)
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, job.id)) >= step + 2, 120, 0.2)
    resumed = mgr.registry.get(job.id)
    assert resumed.cluster_id != first_cluster_id and f"fake job from step {step}" in mgr.log_tail(resumed)
    assert steps(mgr, job.id)[: step + 1] == list(range(1, step + 2))  # continued, not restarted
    mgr.cancel(job.id)
    run_until(mgr, job.id, ("cancelled",), timeout=60)


def test_an_app_restarted_while_the_slurm_job_runs_reattaches_to_it(tmp_path):
    first = manager(tmp_path)
    job = first.start("fake", {"steps": 15, "sleep": 0.3}, executor="slurm")
    assert wait_until(lambda: first.tick() and len(steps(first, job.id)) >= 1, 120, 0.2)
    second = manager(tmp_path)  # a new app on the same workspace; the first one is never asked again
    assert second.reattach() and second.registry.get(job.id).state == "running"
    run_until(second, job.id, ("succeeded",))
    assert steps(second, job.id) == list(range(1, 16))


def test_a_job_sbatch_refuses_fails_with_sbatchs_reason(tmp_path):
    mgr = manager(tmp_path, SlurmSettings(partition="no-such-partition"))
    job = mgr.start("fake", {"steps": 1}, executor="slurm")
    mgr.tick()
    failed = mgr.registry.get(job.id)
    assert failed.state == "failed" and failed.cluster_id is None
    assert "sbatch refused the job" in failed.error and "partition" in failed.error.lower()


def test_a_job_scancelled_outside_the_launcher_fails_like_a_killed_local_job(tmp_path):
    mgr = manager(tmp_path)
    job = mgr.start("fake", {"steps": 400, "sleep": 0.1}, executor="slurm")
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, job.id)) >= 2, 120, 0.2), mgr.log_tail(job)
    subprocess.run(["scancel", mgr.registry.get(job.id).cluster_id], check=True, timeout=30)
    run_until(mgr, job.id, ("failed",), timeout=60)
    failed = mgr.registry.get(job.id)
    assert failed.exit_code == 143 and "Slurm state CANCELLED" in failed.error  # nobody asked the launcher


def test_a_job_that_reaches_its_time_limit_checkpoints_and_fails_resumably(tmp_path):
    mgr = manager(tmp_path, SlurmSettings(time_min=1))  # SIGTERM 10 s before the minute is up
    job = mgr.start("fake", {"steps": 3000, "sleep": 0.1}, executor="slurm")
    run_until(mgr, job.id, ("failed",), timeout=240)
    failed = mgr.registry.get(job.id)
    assert failed.exit_code == 143 and "Slurm state" in failed.error  # FAILED after the signal, or TIMEOUT
    step = json.loads((mgr.run_dir(failed) / "checkpoint.json").read_text())["step"]
    assert f"stopping at step {step} with a checkpoint" in mgr.log_tail(failed)
    assert mgr.resume(job.id).resume


def test_the_tabs_data_and_api_show_a_slurm_job_and_its_curve(tmp_path):
    """What the page's timer and ``/launcher_jobs`` read while Slurm runs the job started with executor slurm."""
    mgr = manager(tmp_path)
    actions = LauncherActions(mgr, LauncherSettings(workspace=mgr.workspace))
    job_id = actions.start("fake", '{"steps": 10, "sleep": 0.4}', "slurm")
    assert wait_until(lambda: mgr.tick() and (actions.jobs()[0]["step"] or 0) >= 2, 120, 0.2)
    (row,) = actions.jobs()
    assert row["executor"] == "slurm" and row["cluster_id"] == mgr.registry.get(job_id).cluster_id
    assert row["state"] == "running" and row["loss"] == 1.0 / row["step"]
    _, _, loss, lr, _, details, *_react_views = actions.refresh(job_id)
    assert len(loss) >= 2 and list(loss.value[:2]) == [1.0, 0.5] and set(lr.value) == {0.1}
    assert row["cluster_state"] == f"Slurm job {row['cluster_id']}: RUNNING"
    assert f"slurm (Slurm job {row['cluster_id']}: RUNNING)" in details
    run_until(mgr, job_id, ("succeeded",))
    assert actions.jobs()[0]["step"] == 10 and actions.jobs()[0]["cluster_state"] is None


def test_a_job_slurm_holds_pending_says_why_and_cancels_at_once(tmp_path):
    cpus = int(
        subprocess.run(
            ["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=20
        ).stdout.split()[0]
    )
    mgr = JobManager(tmp_path / "ws", job_types={"fake": FAKE}, grace_s=5.0, concurrency=2,
                     slurm=SlurmSettings(cpus_per_task=cpus))  # fmt: skip
    first = mgr.start("fake", {"steps": 400, "sleep": 0.1}, executor="slurm")
    second = mgr.start("fake", {"steps": 1}, executor="slurm")
    assert wait_until(lambda: mgr.tick() and len(steps(mgr, first.id)) >= 1, 120, 0.2)
    waiting = mgr.registry.get(second.id)
    assert waiting.state == "running" and waiting.cluster_id  # submitted; Slurm holds it: the node is full
    assert mgr.cluster_status(waiting) == f"Slurm job {waiting.cluster_id}: PENDING (Resources)"
    mgr.cancel(second.id)
    run_until(mgr, second.id, ("cancelled",), timeout=30)
    assert mgr.registry.get(second.id).exit_code is None and not mgr.run_dir(waiting).exists()  # it never ran
    assert query_job(waiting.cluster_id).state == "CANCELLED"
    mgr.cancel(first.id)
    run_until(mgr, first.id, ("cancelled",), timeout=60)
    assert mgr.cluster_status(mgr.registry.get(first.id)) is None  # ended: nothing more to ask Slurm
