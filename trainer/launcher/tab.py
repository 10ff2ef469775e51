"""The training launcher tab: pick a job type and its parameters, start it, watch the jobs table, the selected
job's loss / learning-rate curve and log tail, cancel, resume or delete it. Its actions are also named API
endpoints for ``gradio_client``: ``launcher_job_types``, ``launcher_start``, ``launcher_jobs``,
``launcher_cancel`` and ``launcher_resume``.

One scheduler thread per app (``JobScheduler``) runs ``JobManager.tick`` every second, whether or not a page is
open; the page's ``gr.Timer`` only reads the registry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from react_explorer.ui.subset_handoff import SubsetHandoff
from trainer.launcher import prefill
from trainer.launcher.form import ParamsForm, preset_json
from trainer.launcher.form_spec import default_preset, form_params
from trainer.launcher.job_types import JobParamsError
from trainer.launcher.manager import JobManager
from trainer.launcher.prefill import (
    REACT_FLOW_PRESET,
    REACT_JOB,
    prefill_note,
    react_customize_values,
    switch_preset,
)
from trainer.launcher.react_results import (
    REINDEX_TYPE,
    ZEROSHOT_HEADERS,
    ReindexError,
    before_after_rows,
    customized_model,
    read_report,
    reindex_values,
)
from trainer.launcher.registry import RegistryError
from trainer.launcher.settings import LauncherSettings
from trainer.launcher.views import TABLE_HEADERS, curve_points, job_json, progress, table_row
from trainer.launcher.workspace import PathOutsideWorkspaceError
from vision_common.app_tab import AppTab

USER_ERRORS = (JobParamsError, RegistryError, PathOutsideWorkspaceError, ReindexError, ValueError)
HELP = (
    "Start a training job implemented in `trainer/`: pick its type and a preset, and edit its parameters (input "
    "paths are relative to the project). Jobs run one at a time in the background, survive an app "
    "restart, and keep their log, `metrics.jsonl` and checkpoints in the workspace. **Cancel** asks the job to "
    "checkpoint and stop; **Resume** continues a stopped job from its last checkpoint."
)


class JobScheduler:
    """The app's one scheduler thread: ``manager.tick()`` every ``interval_s`` until ``stop``."""

    def __init__(self, manager: JobManager, interval_s: float = 1.0) -> None:
        self.manager, self.interval_s = manager, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="launcher-scheduler", daemon=True)

    def start(self) -> None:
        self.manager.reattach()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.manager.tick()
            except Exception:  # noqa: BLE001 - one bad tick (a locked disk) must not end scheduling
                continue


class LauncherActions:
    """Everything the page and the API do, with bad input turned into ``gr.Error`` naming the problem."""

    def __init__(self, manager: JobManager, settings: LauncherSettings) -> None:
        self.manager, self.settings = manager, settings

    def _authorise(self, token: str | None) -> None:
        if self.settings.token and token != self.settings.token:
            raise gr.Error("the launcher token is missing or wrong", print_exception=False)

    def job_types(self) -> dict[str, Any]:
        return {
            name: {"title": t.title, "defaults": t.defaults(), "presets": {k: dict(v) for k, v in t.presets.items()},
                   "result": t.result, "resumable": t.resumable}
            for name, t in self.manager.job_types.items()
        }  # fmt: skip

    def params_text(self, job_type: str, preset: str | None) -> str:
        return preset_json(self.manager.job_type(job_type), preset)

    def preset_picked(self, job_type: str, preset: str | None, current: str) -> str:
        """A new preset keeps the values the user or a flow set (``prefill.switch_preset``)."""
        return json.dumps(switch_preset(self.manager.job_type(job_type), current, preset), indent=1)

    def react_customize_form(self, handoff: SubsetHandoff | None) -> tuple[Any, Any, str, str]:
        """The form (job type, preset, parameters, status) prefilled from the explorer's last export."""
        if handoff is None:
            raise gr.Error("export the subset first; then it can be customized on", print_exception=False)
        job_type = self.manager.job_type(REACT_JOB)
        values = react_customize_values(handoff)
        params = json.dumps(prefill.form_params(job_type, REACT_FLOW_PRESET, values), indent=1)
        types = [(t.title, name) for name, t in self.manager.job_types.items()]
        return (
            gr.Dropdown(types, value=REACT_JOB),
            gr.Dropdown(list(job_type.presets), value=REACT_FLOW_PRESET),
            params,
            prefill_note(handoff, values),
        )

    def reindex(self, job_id: str, token: str | None = None) -> str:
        """Start an ``index-build`` job embedding a finished REACT job's pool with its customized CLIP."""
        self._authorise(token)
        try:
            job = self.manager.registry.get(job_id)
            values = reindex_values(job, self.manager.run_dir(job))
            return self.manager.start(REINDEX_TYPE, values, job.executor).id
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def start(self, job_type: str, params: str, executor: str = "local", token: str | None = None) -> str:
        self._authorise(token)
        try:
            raw = json.loads(params or "{}")
        except json.JSONDecodeError as exc:
            raise gr.Error(f"the parameters are not valid JSON: {exc}", print_exception=False) from exc
        try:
            return self.start_params(job_type, raw, executor, token)
        except JobParamsError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def start_params(
        self, job_type: str, raw: Mapping[str, Any], executor: str = "local", token: str | None = None
    ) -> str:
        """Queue a job from parameters already parsed; a ``JobParamsError`` that names fields is raised as it
        is (the form shows each message next to its field), every other refusal as ``gr.Error``."""
        self._authorise(token)
        try:
            return self.manager.start(job_type, raw, executor or "local").id
        except JobParamsError as exc:
            if exc.field_errors:
                raise
            raise gr.Error(str(exc), print_exception=False) from exc
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    def jobs(self) -> list[dict[str, Any]]:
        return [
            {
                **job_json(job, progress(job, self.manager.metrics(job))),
                "cluster_state": self.manager.cluster_status(job),
            }
            for job in self.manager.registry.jobs()
        ]

    def _act(self, action: str, job_id: str, token: str | None) -> str:
        self._authorise(token)
        try:
            job = getattr(self.manager, action)(job_id)
        except USER_ERRORS as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return job.state

    def cancel(self, job_id: str, token: str | None = None) -> str:
        return self._act("cancel", job_id, token)

    def resume(self, job_id: str, token: str | None = None) -> str:
        return self._act("resume", job_id, token)

    def delete(self, job_id: str, confirmed: bool, token: str | None = None) -> str:
        if not confirmed:
            raise gr.Error(
                "tick the confirmation box to delete the job and its folder", print_exception=False
            )
        return self._act("delete", job_id, token)

    # -- page views --------------------------------------------------------------------------------------------

    def refresh(self, selected: str | None) -> tuple[Any, ...]:
        """Outputs: jobs table, job selector, loss curve, learning-rate curve, log tail, details, the REACT
        before/after table, the re-index button."""
        jobs = self.manager.registry.jobs()
        rows = [table_row(job, progress(job, self.manager.metrics(job))) for job in reversed(jobs)]
        ids = [job.id for job in reversed(jobs)]
        if selected not in ids:
            selected = ids[0] if ids else None
        table = pd.DataFrame(rows, columns=TABLE_HEADERS)
        if selected is None:
            empty = pd.DataFrame({"step": [], "value": [], "series": []})
            return (table, gr.Dropdown(choices=ids, value=None), empty, empty, "", "No jobs yet.",
                    *self._react_views(None))  # fmt: skip
        job = self.manager.registry.get(selected)
        metrics = self.manager.metrics(job)
        points = pd.DataFrame(curve_points(metrics), columns=["step", "value", "series"])
        loss, lr = points[points.series == "loss"], points[points.series == "lr"]
        details = f"**{job.id}** · {job.type} · **{job.state}** · {job.executor}"
        if job.cluster_id:
            details += f" ({self.manager.cluster_status(job) or f'Slurm job {job.cluster_id}'})"
        if job.exit_code is not None:
            details += f" · exit code {job.exit_code}"
        if job.state == "succeeded":
            details += f"\n\nResult in `{self.settings.workspace / job.out_dir / 'run'}`: {self.manager.job_type(job.type).result}"
        if job.error:
            details += f"\n\n```\n{job.error[-2000:]}\n```"
        return (
            table,
            gr.Dropdown(choices=ids, value=selected),
            loss,
            lr,
            self.manager.log_tail(job, 40),
            details,
            *self._react_views(job),
        )

    def _react_views(self, job: Any) -> tuple[Any, Any]:
        """The zero-shot before/after table (a finished REACT job with a report) and the re-index button (a
        finished react-customize job with its model); both hidden otherwise."""
        run_dir = self.manager.run_dir(job) if job is not None else None
        report = read_report(job, run_dir) if job is not None else None
        table = (
            gr.Dataframe(value=before_after_rows(report), visible=True)
            if report is not None
            else gr.Dataframe(visible=False)
        )
        can_reindex = job is not None and job.type == REACT_JOB and job.state == "succeeded"
        return table, gr.Button(visible=bool(can_reindex and customized_model(run_dir)))


def launcher_tab(settings: LauncherSettings) -> AppTab:
    if not settings.enabled:
        return AppTab(
            title="Training launcher", tab_id="launcher", build=lambda: gr.Markdown(settings.disabled_reason)
        )
    manager = JobManager(
        settings.workspace,
        concurrency=settings.concurrency,
        max_queued=settings.max_queued,
        slurm=settings.slurm,
    )
    scheduler = JobScheduler(manager)
    actions = LauncherActions(manager, settings)
    return AppTab(
        title="Training launcher",
        tab_id="launcher",
        build=lambda: build_launcher_tab(actions),
        startup=scheduler.start,
        close=scheduler.stop,
    )


@dataclass(frozen=True)
class LauncherPorts:
    """What the tab offers other tabs' flows: the form a flow may prefill (``react_customize_form``'s outputs,
    in this order) and the actions."""

    job_type: gr.Dropdown
    preset: gr.Dropdown
    params: gr.Code
    status: gr.Markdown
    fields: ParamsForm
    actions: LauncherActions

    @property
    def form(self) -> list[Any]:
        """Job type, preset, parameters JSON, status, then every type's field components (``fields.inputs``)."""
        return [self.job_type, self.preset, self.params, self.status, *self.fields.inputs]

    def react_customize_form(self, handoff: SubsetHandoff | None) -> list[Any]:
        """``actions.react_customize_form`` plus the ``react-customize`` fields filled with the same values:
        setting the job type from code shows its column (``ParamsForm.visibility``) but fills nothing."""
        job_type, preset, params, status = self.actions.react_customize_form(handoff)
        values = {k: v for k, v in json.loads(params).items() if k != "preset"}
        return [job_type, preset, params, status, *self.fields.fill(REACT_JOB, values)]


def build_launcher_tab(actions: LauncherActions) -> LauncherPorts:
    types = actions.manager.job_types
    first = "llava-stage2" if "llava-stage2" in types else next(iter(types))
    gr.Markdown(HELP)
    private: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None}
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            job_type = gr.Dropdown([(t.title, n) for n, t in types.items()], value=first, label="Job type",
                                   elem_id="launcher-type")  # fmt: skip
            preset = gr.Dropdown(list(types[first].presets), value=default_preset(types[first]), label="Preset",
                                 elem_id="launcher-preset")  # fmt: skip
            form = ParamsForm(types, first)
            with gr.Accordion("Parameters as JSON (advanced)", open=False, elem_id="launcher-json"):
                params = gr.Code(actions.params_text(first, default_preset(types[first])), language="json",
                                 label="Parameters (what /launcher_start takes)", elem_id="launcher-params",
                                 interactive=True)  # fmt: skip
                apply = gr.Button("Fill the form from this JSON", size="sm", elem_id="launcher-params-apply")
            executor = gr.Radio(list(actions.manager.executors), value="local", label="Executor",
                                elem_id="launcher-executor")  # fmt: skip
            token = gr.Textbox(label="Launcher token", type="password", visible=bool(actions.settings.token))
            start = gr.Button("Start", variant="primary", elem_id="launcher-start")
            status = gr.Markdown(elem_id="launcher-status")
        with gr.Column(scale=3, min_width=420):
            table = gr.Dataframe(
                headers=TABLE_HEADERS, interactive=False, label="Jobs", elem_id="launcher-jobs"
            )
            selected = gr.Dropdown([], label="Selected job", elem_id="launcher-selected")
            with gr.Row():
                cancel = gr.Button("Cancel", elem_id="launcher-cancel")
                resume = gr.Button("Resume", elem_id="launcher-resume")
                delete = gr.Button("Delete", variant="stop", elem_id="launcher-delete")
                confirm = gr.Checkbox(label="yes, delete it and its folder", value=False)
            details = gr.Markdown(elem_id="launcher-details")
            zeroshot = gr.Dataframe(
                headers=ZEROSHOT_HEADERS,
                interactive=False,
                visible=False,
                label="Zero-shot before / after (%, change in points)",
                elem_id="launcher-zeroshot",
            )
            reindex = gr.Button("Re-index the pool with this CLIP", visible=False, elem_id="launcher-reindex")
            with gr.Row():
                loss = gr.LinePlot(
                    x="step", y="value", label="Training loss", elem_id="launcher-loss", height=260
                )
                lr = gr.LinePlot(
                    x="step", y="value", label="Learning rate", elem_id="launcher-lr", height=260
                )
            log = gr.Textbox(
                label="Log (tail)", lines=12, max_lines=12, autoscroll=True, elem_id="launcher-log"
            )
    views = [table, selected, loss, lr, log, details, zeroshot, reindex]
    timer = gr.Timer(actions.settings.refresh_s)
    timer.tick(actions.refresh, [selected], views, show_progress="hidden", **private)
    selected.input(actions.refresh, [selected], views, **private)
    job_type.change(form.visibility, [job_type], form.columns, **private)
    # By hand only (.input): a type or preset set by another event (Apply, a prefill) keeps the values it brings
    # (a ``change`` cascade would overwrite a flow's prefilled values with the preset's). A preset picked by hand
    # keeps the values the old preset (the JSON's ``preset``) did not set: the user's or a flow's edits.
    job_type.input(form.on_type, [job_type], [preset, params, *form.inputs], **private)
    preset.input(form.on_preset, [job_type, preset, params, *form.inputs], [params, *form.inputs], **private)
    apply.click(form.on_apply, [job_type, params], [preset, status, *form.inputs], **private)

    def start_from_page(t: str, p: str | None, ex: str, tok: str | None, *values: Any) -> list[Any]:
        raw = form_params(types[t], p, form.values(t, values))
        text = json.dumps(raw, indent=1)
        try:
            job_id = actions.start_params(t, raw, ex, tok)
        except JobParamsError as exc:
            count = len(exc.field_errors)
            return [f"**Not started**: {count} field{'s' if count > 1 else ''} to fix (marked ⚠ above).",
                    gr.skip(), text, *form.show_errors(t, exc.field_errors)]  # fmt: skip
        # The selector's choices must hold the new id before it is selected (Gradio checks a value is a choice).
        ids = [job.id for job in reversed(actions.manager.registry.jobs())]
        return [f"Queued **{job_id}** ({ex}).", gr.Dropdown(choices=ids, value=job_id), text,
                *form.show_errors(t, {})]  # fmt: skip

    start.click(start_from_page, [job_type, preset, executor, token, *form.inputs],
                [status, selected, params, *form.inputs], **private)  # fmt: skip

    def reindex_from_page(j: str, tok: str | None) -> tuple[str, Any]:
        job_id = actions.reindex(j, tok)
        ids = [job.id for job in reversed(actions.manager.registry.jobs())]
        return f"Queued **{job_id}** ({REINDEX_TYPE} with the CLIP of {j}).", gr.Dropdown(
            choices=ids, value=job_id
        )

    reindex.click(reindex_from_page, [selected, token], [status, selected], **private)
    cancel.click(lambda j, tok: f"{j}: {actions.cancel(j, tok)}", [selected, token], [status], **private)
    resume.click(lambda j, tok: f"{j}: {actions.resume(j, tok)}", [selected, token], [status], **private)
    delete.click(lambda j, c, tok: f"{j}: deleted ({actions.delete(j, c, tok)})", [selected, confirm, token], [status],
                 **private)  # fmt: skip
    with gr.Group(visible=False):  # components only the API uses
        _api_components(actions)
    return LauncherPorts(job_type, preset, params, status, form, actions)


def _api_components(actions: LauncherActions) -> None:
    job_type, params = gr.Textbox(label="job_type"), gr.Textbox(label="params", value="{}")
    executor, token = gr.Textbox(label="executor", value="local"), gr.Textbox(label="token", value="")
    job_id, out_json, out_text = gr.Textbox(label="job_id"), gr.JSON(label="result"), gr.Textbox(label="out")
    buttons = [gr.Button(name) for name in ("types", "start", "jobs", "cancel", "resume")]
    buttons[0].click(actions.job_types, None, [out_json], api_name="launcher_job_types")
    buttons[1].click(
        actions.start, [job_type, params, executor, token], [out_text], api_name="launcher_start"
    )
    buttons[2].click(actions.jobs, None, [out_json], api_name="launcher_jobs")
    buttons[3].click(actions.cancel, [job_id, token], [out_text], api_name="launcher_cancel")
    buttons[4].click(actions.resume, [job_id, token], [out_text], api_name="launcher_resume")
