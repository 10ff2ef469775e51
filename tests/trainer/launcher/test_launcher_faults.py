"""Fault tests of the launcher (issue #17 acceptance): ``kill -9`` of the app process while a job runs (a
restarted app re-attaches to the job, which keeps writing metrics and then finishes), and ``kill -9`` of a job
(``failed`` with exit code -9 and its log tail, in the tab's details and in ``/launcher_jobs``' data).

The app here is ``tests/support/launcher_app.py``: the app shell with only the launcher tab (plus the
stand-in job type), started as a process with ``app.py``'s flags and driven with ``gradio_client``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gradio_client import Client

from tests.support.gradio_wait import wait_until_gradio_answers
from tests.support.launcher_fake import FAKE, RELEASE_FILE
from tests.support.paths import REPO_ROOT
from trainer.launcher.job_types import JOB_TYPES
from trainer.launcher.local_executor import ProcessHandle, is_alive, wait_until
from trainer.launcher.manager import JobManager
from trainer.launcher.registry import JobRegistry
from trainer.launcher.settings import LauncherSettings
from trainer.launcher.tab import LauncherActions

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]
START_TIMEOUT_S = 240  # a loaded two-core machine imports torch and Gradio slowly
# The held job steps every 0.1 s and ends on its own after 10 minutes if a failed test never releases it.
HELD = {"steps": 6000, "sleep": 0.1, "hold": True}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def launcher_app(workspace: Path, log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """The launcher app process on ``workspace`` until the block ends (or the test kills it)."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "NO_PROXY": "127.0.0.1,localhost", "GRADIO_TEMP_DIR": str(log_path.parent / "gradio")}  # fmt: skip
    command = [sys.executable, "-m", "tests.support.launcher_app", "--workspace", str(workspace), "--port",
               str(port), "--no-preload", "--feedback-log", "", "--react-no-background-build"]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_gradio_answers(process, url, log_path, "the launcher app", START_TIMEOUT_S)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def api_job(client: Client, job_id: str) -> dict:
    (job,) = [j for j in client.predict(api_name="/launcher_jobs") if j["id"] == job_id]
    return job


def wait_for(client: Client, job_id: str, done, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api_job(client, job_id)
        if done(job) or time.monotonic() > deadline:
            assert done(job), job
            return job
        time.sleep(0.3)


@pytest.fixture()
def workspace(tmp_path):
    """The workspace; at the end every job process group still alive in it is killed (a failed test must not
    leave a held job running)."""
    ws = tmp_path / "ws"
    yield ws
    if (ws / "jobs.sqlite").exists():
        for job in JobRegistry(ws).jobs():
            if job.pid and is_alive(ProcessHandle(job.pid, job.pid_start)):
                os.killpg(job.pid, signal.SIGKILL)


def test_kill_9_of_the_app_process_a_restarted_app_reattaches_the_job_and_it_finishes(tmp_path, workspace):
    with launcher_app(workspace, tmp_path / "app-1.log") as (app, url):
        client = Client(url, verbose=False)
        job_id = client.predict("fake", json.dumps(HELD), "local", "", api_name="/launcher_start")
        wait_for(client, job_id, lambda j: j["state"] == "running" and (j["step"] or 0) >= 2)
        os.kill(app.pid, signal.SIGKILL)
        assert app.wait(30) == -signal.SIGKILL
    running = JobRegistry(workspace).get(job_id)
    job = ProcessHandle(running.pid, running.pid_start)
    assert running.state == "running" and is_alive(job)  # the job outlived the app that started it
    metrics = workspace / running.out_dir / "run" / "metrics.jsonl"
    lines_without_app = len(metrics.read_text().splitlines())
    assert wait_until(lambda: len(metrics.read_text().splitlines()) > lines_without_app, 30)

    with launcher_app(workspace, tmp_path / "app-2.log") as (_app, url):
        client = Client(url, verbose=False)
        reattached = api_job(client, job_id)
        # Re-attached, not `interrupted`: the same process (pid and start time), still running, no error.
        assert (reattached["state"], reattached["error"], reattached["exit_code"]) == ("running", None, None)
        assert JobRegistry(workspace).get(job_id).pid == running.pid and is_alive(job)
        seen = reattached["step"]
        flowing = wait_for(client, job_id, lambda j: j["step"] >= seen + 5)  # its metrics keep flowing
        (workspace / running.out_dir / "run" / RELEASE_FILE).touch()
        finished = wait_for(client, job_id, lambda j: j["state"] != "running", timeout=60)
        assert (finished["state"], finished["exit_code"], finished["error"]) == ("succeeded", 0, None)
        assert finished["step"] >= flowing["step"] > seen
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, finished["step"] + 1))  # one unbroken run: nothing restarted or lost
    assert f"released at step {finished['step']}" in (workspace / running.log_path).read_text()


def job_process(manager: JobManager, job_id: str) -> int:
    """The pid of the job's command (the wrapper's child)."""
    wrapper = manager.registry.get(job_id).pid
    return int(Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()[0])


@pytest.mark.parametrize("target", ["command", "process group"])
def test_kill_9_of_a_job_fails_it_and_the_tab_shows_its_exit_code_and_log_tail(tmp_path, workspace, target):
    manager = JobManager(workspace, job_types={"fake": FAKE, **JOB_TYPES}, grace_s=2.0)
    actions = LauncherActions(manager, LauncherSettings(workspace=workspace))
    job = manager.start("fake", HELD)
    assert wait_until(lambda: manager.tick() and len(manager.metrics(manager.registry.get(job.id))) >= 2, 60)
    if target == "command":  # what the OOM killer or `kill -9 PID` of the trainer does
        os.kill(job_process(manager, job.id), signal.SIGKILL)
    else:  # `kill -9 -PGID`: the trainer and the launcher's wrapper, which then writes no exit record
        os.killpg(manager.registry.get(job.id).pid, signal.SIGKILL)
    assert wait_until(lambda: manager.tick() and manager.registry.get(job.id).state != "running", 30)
    (shown,) = actions.jobs()  # what /launcher_jobs returns
    assert (shown["state"], shown["exit_code"]) == ("failed", -9)
    assert "fake job from step 0" in shown["error"] and "log tail" in shown["error"]
    _table, _selector, _loss, _lr, log, details, *_react_views = actions.refresh(job.id)
    assert "**failed**" in details and "exit code -9" in details and "fake job from step 0" in details
    assert log.startswith("fake job from step 0")
