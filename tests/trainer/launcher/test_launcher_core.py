"""The launcher's job system: registry state machine and concurrency, validated job parameters, the local
executor's cancel / kill / re-attach semantics, resume from a checkpoint."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support.launcher_fake import FAKE
from trainer.launcher.job_types import JOB_TYPES, JobParamsError
from trainer.launcher.local_executor import ProcessHandle, is_alive, wait_until
from trainer.launcher.manager import JobManager
from trainer.launcher.registry import InvalidTransitionError, JobRegistry, QueueFullError
from trainer.launcher.workspace import PathOutsideWorkspaceError, confined


def manager(tmp_path: Path, **kw) -> JobManager:
    return JobManager(tmp_path / "ws", job_types={"fake": FAKE, **JOB_TYPES}, grace_s=2.0, **kw)


def run_until(mgr: JobManager, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> None:
    assert wait_until(lambda: mgr.tick() and mgr.registry.get(job_id).state in states, timeout, 0.1), (
        mgr.registry.get(job_id),
        mgr.log_tail(mgr.registry.get(job_id)),
    )


# -- registry -------------------------------------------------------------------------------------------------


def test_state_machine_refuses_transitions_it_does_not_allow(tmp_path):
    registry = JobRegistry(tmp_path, max_queued=2)
    job = registry.create("fake", {}, "local")
    assert job.state == "queued" and (tmp_path / job.out_dir).is_dir()
    with pytest.raises(InvalidTransitionError, match="is queued; it cannot become succeeded"):
        registry.transition(job.id, "succeeded")
    registry.transition(job.id, "running", expect="queued")
    with pytest.raises(InvalidTransitionError):
        registry.transition(job.id, "running", expect="queued")  # a second claimer loses
    registry.transition(job.id, "succeeded")
    with pytest.raises(InvalidTransitionError, match="succeeded; it cannot become queued"):
        registry.transition(job.id, "queued")
    registry.create("fake", {}, "local")
    registry.create("fake", {}, "local")
    with pytest.raises(QueueFullError, match="the queue is full"):
        registry.create("fake", {}, "local")


def _start_jobs(workspace: str, count: int, results) -> None:
    mgr = JobManager(Path(workspace), job_types={"fake": FAKE}, max_queued=64, concurrency=3)
    ids = [mgr.start("fake", {"steps": 1, "sleep": 0.0}).id for _ in range(count)]
    for _ in range(40):
        mgr.tick()
        time.sleep(0.05)
    results.put(ids)


@pytest.mark.slow
def test_two_app_processes_start_ten_jobs_each_without_losing_or_duplicating(tmp_path):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_start_jobs, args=(str(tmp_path), 10, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    ids = results.get(timeout=300) + results.get(timeout=300)
    for worker in workers:
        worker.join(timeout=60)
    mgr = JobManager(tmp_path, job_types={"fake": FAKE}, max_queued=64)
    run_until_all = wait_until(lambda: all(j.state == "succeeded" for j in mgr.tick()), 120, 0.2)
    jobs = mgr.registry.jobs()
    assert run_until_all, [(j.id, j.state) for j in jobs]
    assert len(ids) == len(set(ids)) == len(jobs) == 20
    assert all(job.attempts == 1 for job in jobs)  # each job was started by exactly one process, once


# -- parameters -------------------------------------------------------------------------------------------------


def test_parameters_are_validated_and_name_the_field(tmp_path):
    stage2 = JOB_TYPES["llava-stage2"]
    (tmp_path / "data.json").write_text("[]")
    (tmp_path / "images").mkdir()
    params = stage2.params_from({"preset": "tiny", "data": "data.json", "images": "images"}, tmp_path)
    assert (params.config, params.max_steps) == ("tiny", 6)
    argv = stage2.argv(params, tmp_path / "run", resume=True)
    assert argv[:4] == [sys.executable, "-m", "trainer.llava.train", "--config"] and argv[-1] == "--resume"
    cases = [
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"data": "data.json", "images": "images", "steps": 3}, r"unknown parameter\(s\) \['steps'\]"),
        ({"data": "data.json", "images": "images", "max_steps": "5"}, "llava-stage2.max_steps must be int"),
        ({"data": "data.json", "images": "images", "max_steps": -1}, "max_steps must be between 0"),
        ({"data": "../etc/passwd", "images": "images"}, "must not contain '..'"),
        ({"data": "/etc/passwd", "images": "images"}, "not absolute"),
        ({"data": "missing.json", "images": "images"}, "missing.json does not exist"),
        ({"images": "images"}, "llava-stage2.data is required"),
        ({"data": "data.json", "images": "images", "config": "giant"}, "config must be one of"),
    ]
    for raw, message in cases:
        with pytest.raises(JobParamsError, match=message):
            stage2.params_from(raw, tmp_path)
    os.symlink("/etc", tmp_path / "out")
    with pytest.raises(JobParamsError, match="resolves outside"):
        stage2.params_from({"data": "out/passwd", "images": "images"}, tmp_path)
    with pytest.raises(JobParamsError, match="unknown job type 'rm'"):
        manager(tmp_path).start("rm", {})


def test_workspace_paths_are_confined(tmp_path):
    assert confined(tmp_path, "jobs/a/job.log", field="log") == tmp_path.resolve() / "jobs/a/job.log"
    for bad in ("", "/tmp/x", "a/../../x", "~/x"):
        with pytest.raises(PathOutsideWorkspaceError):
            confined(tmp_path, bad, field="log")


# -- executor -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_runs_to_success_and_a_failing_one_shows_its_exit_code_and_log(tmp_path):
    mgr = manager(tmp_path, concurrency=2)
    ok = mgr.start("fake", {"preset": "tiny"})
    bad = mgr.start("fake", {"steps": 1, "fail": True})
    run_until(mgr, ok.id, ("succeeded",))
    run_until(mgr, bad.id, ("failed",))
    assert [r["step"] for r in mgr.metrics(mgr.registry.get(ok.id))] == [1, 2]
    failed = mgr.registry.get(bad.id)
    assert failed.exit_code == 3 and "failing on purpose" in failed.error


@pytest.mark.slow
def test_cancel_checkpoints_and_resume_continues_from_its_step(tmp_path):
    mgr = manager(tmp_path)
    job = mgr.start("fake", {"steps": 400, "sleep": 0.05})
    assert wait_until(lambda: mgr.tick() and len(mgr.metrics(mgr.registry.get(job.id))) >= 2, 60)
    mgr.cancel(job.id)
    run_until(mgr, job.id, ("cancelled",))
    cancelled = mgr.registry.get(job.id)
    assert cancelled.exit_code == 143
    step = json.loads((mgr.run_dir(cancelled) / "checkpoint.json").read_text())["step"]
    assert step >= 2
    resumed = mgr.resume(job.id)
    assert resumed.state == "queued" and resumed.resume
    mgr.tick()
    assert wait_until(lambda: f"fake job from step {step}" in mgr.log_tail(mgr.registry.get(job.id)), 60)
    mgr.cancel(job.id)
    run_until(mgr, job.id, ("cancelled",))
    with pytest.raises(InvalidTransitionError, match="only stopped jobs"):
        mgr.resume(mgr.start("fake", {}).id)


@pytest.mark.slow
def test_kill_9_of_the_job_fails_it_with_the_signal_and_the_log_tail(tmp_path):
    mgr = manager(tmp_path)
    job = mgr.start("fake", {"steps": 400, "sleep": 0.05})
    assert wait_until(lambda: mgr.tick() and len(mgr.metrics(mgr.registry.get(job.id))) >= 1, 60)
    wrapper = mgr.registry.get(job.id).pid
    child = int(Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()[0])
    os.kill(child, signal.SIGKILL)
    run_until(mgr, job.id, ("failed",))
    failed = mgr.registry.get(job.id)
    assert failed.exit_code == -9 and "fake job from step 0" in failed.error


@pytest.mark.slow
def test_a_restarted_app_reattaches_to_running_jobs_and_marks_vanished_ones_interrupted(tmp_path):
    first = manager(tmp_path, concurrency=2)
    alive = first.start("fake", {"steps": 30, "sleep": 0.1})
    lost = first.start("fake", {"steps": 400, "sleep": 0.05})
    queued = first.start("fake", {})
    assert wait_until(lambda: first.tick() and all(first.registry.get(j.id).pid for j in (alive, lost)), 60)
    os.killpg(first.registry.get(lost.id).pid, signal.SIGKILL)  # the job and its wrapper vanish
    # The app "restarts": a new manager on the same workspace, which is not the parent of the jobs.
    second = manager(tmp_path, concurrency=2)
    gone = second.registry.get(lost.id)
    assert wait_until(lambda: not is_alive(ProcessHandle(gone.pid, gone.pid_start)), 10)  # a zombie is gone
    second.reattach()
    assert second.registry.get(alive.id).state == "running"
    interrupted = second.registry.get(lost.id)
    assert interrupted.state == "interrupted" and "log tail" in interrupted.error
    assert second.registry.get(queued.id).state in ("queued", "running")
    before = len(second.metrics(second.registry.get(alive.id)))
    run_until(second, alive.id, ("succeeded",))
    assert len(second.metrics(second.registry.get(alive.id))) > before  # its metrics kept flowing
    assert second.registry.get(alive.id).exit_code == 0  # read from the wrapper's exit file


def test_inputs_may_be_another_jobs_result_inside_the_workspace(tmp_path):
    stage2 = JOB_TYPES["llava-stage2"]
    workspace = tmp_path / "ws"
    (workspace / "jobs" / "a" / "run").mkdir(parents=True)
    (workspace / "jobs" / "a" / "run" / "instructions.json").write_text("[]")
    data = str(workspace / "jobs" / "a" / "run" / "instructions.json")
    params = stage2.params_from({"data": data, "images": "docs"}, workspace=workspace)
    assert params.data == data
    with pytest.raises(JobParamsError, match="not absolute"):
        stage2.params_from({"data": str(tmp_path / "elsewhere.json"), "images": "docs"}, workspace=workspace)


def test_react_job_types_run_the_react_cli_with_validated_parameters(tmp_path):
    customize, evaluate = JOB_TYPES["react-customize"], JOB_TYPES["react-eval"]
    (tmp_path / "subset.parquet").write_bytes(b"")
    (tmp_path / "clip").mkdir()
    params = customize.params_from({"preset": "tiny", "subset": "subset.parquet", "base": "clip"}, tmp_path)
    argv = customize.argv(params, tmp_path / "run", resume=True)
    assert argv[1:5] == ["-m", "trainer.react", "train", "--subset"] and argv[-1] == "--resume"
    assert argv[argv.index("--strategy") + 1] == "gated-image" and argv[argv.index("--max-steps") + 1] == "4"
    with pytest.raises(JobParamsError, match="react-customize.strategy must be one of"):
        customize.params_from({"subset": "subset.parquet", "base": "clip", "strategy": "lora"}, tmp_path)
    with pytest.raises(JobParamsError, match="react-eval.model is required"):
        evaluate.params_from({"baseline": "clip", "task": "clip"}, tmp_path)
    # Class names alone score nothing: they restrict the eval task's classes, so they go with it.
    classes_only = customize.params_from(
        {"subset": "subset.parquet", "base": "clip", "classes": "a, b"}, tmp_path
    )
    assert "--eval-task" not in customize.argv(classes_only, tmp_path / "run")
    assert "--eval-classes" not in customize.argv(classes_only, tmp_path / "run")
    with pytest.raises(JobParamsError, match="react-customize.eval_task: missing does not exist"):
        customize.params_from({"subset": "subset.parquet", "base": "clip", "eval_task": "missing"}, tmp_path)
    scored = evaluate.params_from(
        {"model": "clip", "baseline": "clip", "task": "clip", "classes": "a,b"}, tmp_path
    )
    argv = evaluate.argv(scored, tmp_path / "run")
    assert argv[argv.index("--classes") + 1] == "a,b"
