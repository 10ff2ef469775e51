"""The launcher tab: pure views (progress, ETA, curves), the loopback/token gate, and its named API endpoints
driven with ``gradio_client`` against a served app (a stand-in job type that trains in a fraction of a second)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app_shell.settings import AppSettings
from app_shell.shell import build_app, launch
from llava_demo.ui.settings import ChatSettings
from tests.trainer.launcher.test_launcher_core import FAKE
from trainer.launcher.job_types import JOB_TYPES
from trainer.launcher.manager import JobManager
from trainer.launcher.registry import JobRecord
from trainer.launcher.settings import LauncherSettings, launcher_settings_from_args
from trainer.launcher.tab import JobScheduler, LauncherActions, build_launcher_tab
from trainer.launcher.views import curve_points, progress, table_row
from vision_common.app_tab import AppTab

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def record(**overrides) -> JobRecord:
    values = dict(id="j1", type="fake", params={"max_steps": 10}, state="running", executor="local", pid=1,
                  pid_start=1, cluster_id=None, created=0.0, started=100.0, ended=None, exit_code=None,
                  out_dir="jobs/j1", log_path="jobs/j1/job.log", error=None, cancel_requested=False, attempts=1,
                  resume=False)  # fmt: skip
    values.update(overrides)
    return JobRecord(**values)


def test_progress_eta_and_rows_are_computed_from_the_metrics():
    metrics = [
        {"step": 1, "loss": 2.0, "lr": 0.1, "elapsed_s": 2.0},
        {"step": 4, "loss": 1.5, "elapsed_s": 8.0},
    ]
    p = progress(record(), metrics, now=110.0)
    # 3 steps in 6 s = 0.5 steps/s; 6 steps left -> 12 s.
    assert (p.step, p.total, p.loss, p.elapsed_s, p.eta_s) == (4, 10, 1.5, 10.0, 12.0)
    assert table_row(record(), p) == ["j1", "fake", "running", "4/10", "1.5000", "0:10", "0:12"]
    finished = progress(record(state="succeeded", ended=3800.0), metrics, now=9999.0)
    assert finished.eta_s is None and table_row(record(), finished)[5] == "1:01:40"
    assert curve_points(metrics + [{"step": 5, "loss": float("nan")}, {"loss": 1.0}]) == [
        {"step": 1, "value": 2.0, "series": "loss"},
        {"step": 1, "value": 0.1, "series": "lr"},
        {"step": 4, "value": 1.5, "series": "loss"},
    ]


def test_the_launcher_is_off_beyond_loopback_without_a_token(tmp_path):
    args = argparse.Namespace(workspace=tmp_path, launcher_token=None, launcher_concurrency=1)
    off = launcher_settings_from_args(args, loopback_only=False)
    assert not off.enabled and "launcher token" in off.disabled_reason
    assert launcher_settings_from_args(args, loopback_only=True).enabled
    args.launcher_token = "s3cret"
    on = launcher_settings_from_args(args, loopback_only=False)
    assert on.enabled and on.token == "s3cret"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("launcher")
    settings = LauncherSettings(workspace=root / "ws", token="tok", refresh_s=0.5)
    manager = JobManager(settings.workspace, job_types={"fake": FAKE, **JOB_TYPES}, grace_s=2.0)
    scheduler = JobScheduler(manager, interval_s=0.2)
    actions = LauncherActions(manager, settings)
    tab = AppTab(
        "Training launcher", "launcher", lambda: build_launcher_tab(actions), scheduler.start, scheduler.stop
    )
    app_settings = AppSettings(chat=ChatSettings.tiny())
    demo = build_app(app_settings, [tab])
    scheduler.start()
    _app, url = launch(demo, app_settings, [tab], block=False)
    try:
        yield SimpleNamespace(url=url, manager=manager, actions=actions)
    finally:
        demo.close()
        scheduler.stop()


def wait_for_state(client: Client, job_id: str, states: tuple[str, ...], timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (job,) = [j for j in client.predict(api_name="/launcher_jobs") if j["id"] == job_id]
        if job["state"] in states:
            return job
        time.sleep(0.3)
    raise AssertionError(f"{job_id} never reached {states}: {job}")


@pytest.mark.slow
def test_api_starts_watches_cancels_and_resumes_jobs(served):
    client = Client(served.url, verbose=False)
    types = client.predict(api_name="/launcher_job_types")
    assert {"llava-stage1", "llava-stage2", "data-engine", "index-build", "llava-eval", "fake"} <= set(types)
    assert types["llava-stage2"]["presets"]["tiny"]["max_steps"] == 6
    job_id = client.predict("fake", '{"preset": "tiny"}', "local", "tok", api_name="/launcher_start")
    job = wait_for_state(client, job_id, ("succeeded",))
    assert (job["step"], job["loss"]) == (2, 0.5)
    table, _selector, loss, lr, _log, details, zeroshot, reindex = served.actions.refresh(job_id)
    assert job_id in list(table["id"]) and "succeeded" in details
    assert zeroshot.visible is False and reindex.visible is False  # REACT jobs only
    assert list(loss["value"]) == [1.0, 0.5] and list(lr["value"]) == [0.1, 0.1]
    long_id = client.predict(
        "fake", '{"steps": 400, "sleep": 0.05}', "local", "tok", api_name="/launcher_start"
    )
    deadline = time.monotonic() + 60
    while wait_for_state(client, long_id, ("running",))["step"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.predict(long_id, "tok", api_name="/launcher_cancel") == "running"
    cancelled = wait_for_state(client, long_id, ("cancelled",))
    assert cancelled["exit_code"] == 143
    assert client.predict(long_id, "tok", api_name="/launcher_resume") == "queued"
    wait_for_state(client, long_id, ("running",))
    client.predict(long_id, "tok", api_name="/launcher_cancel")
    wait_for_state(client, long_id, ("cancelled",))
    assert "fake job from step" in served.manager.log_tail(served.manager.registry.get(long_id))


@pytest.mark.slow
def test_api_refuses_bad_requests_with_the_reason(served):
    client = Client(served.url, verbose=False)
    cases = [
        (("rm", "{}", "local", "tok"), "unknown job type 'rm'"),
        (("fake", "{not json", "local", "tok"), "not valid JSON"),
        (("fake", '{"steps": -3}', "local", "tok"), "fake.steps must be between 0"),
        (
            ("llava-stage2", '{"data": "../../etc/passwd", "images": "x"}', "local", "tok"),
            "must not contain '..'",
        ),
        (("llava-stage2", '{"data": "/etc/passwd", "images": "x"}', "local", "tok"), "not absolute"),
        (("fake", "{}", "local", "wrong"), "token is missing or wrong"),
        (("fake", "{}", "ray", "tok"), "unknown executor 'ray'"),  # slurm: where sbatch is
    ]
    for args, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/launcher_start")
    with pytest.raises(AppError, match="no job with id"):
        client.predict("nope", "tok", api_name="/launcher_cancel")
    assert Path(served.manager.workspace, "jobs.sqlite").is_file()
