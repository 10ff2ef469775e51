"""The launcher's one-click REACT flows without a browser: the explorer export -> ``react-customize`` prefill,
preset switches that keep the prefill, the zero-shot before/after table (hand-computed), and "Re-index the pool
with this CLIP" (an ``index-build`` job on the customized model)."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from react_explorer.ui.subset_handoff import SubsetHandoff
from tests.trainer.launcher.test_launcher_tab import record
from trainer.launcher.job_types import JOB_TYPES
from trainer.launcher.manager import JobManager
from trainer.launcher.prefill import form_params, job_path, react_customize_values, switch_preset
from trainer.launcher.react_results import (
    ReindexError,
    before_after_rows,
    customized_model,
    read_report,
    reindex_values,
)
from trainer.launcher.settings import LauncherSettings
from trainer.launcher.tab import LauncherActions
from vision_common.paths import PROJECT_ROOT

REACT = JOB_TYPES["react-customize"]
EMBEDDED_CLIP = PROJECT_ROOT / "assets" / "synthworld" / "models" / "synthworld-clip"


def handoff(tmp_path: Path, **overrides) -> SubsetHandoff:
    values = dict(subset=PROJECT_ROOT / "runs" / "react" / "exports" / "s.parquet", class_names=("circle", "square"),
                  model_dir=EMBEDDED_CLIP, pool=tmp_path / "ws" / "world" / "pool" / "pool.parquet",
                  task_dir=tmp_path / "ws" / "world" / "tasks" / "shapes", rows=40)  # fmt: skip
    values.update(overrides)
    return SubsetHandoff(**values)


def test_an_export_maps_to_react_customize_parameters(tmp_path):
    values = react_customize_values(handoff(tmp_path))
    assert values == {
        "subset": "runs/react/exports/s.parquet",  # inside the project: relative, as job parameters take it
        "classes": "circle, square",
        "base": "assets/synthworld/models/synthworld-clip",
        "eval_task": str(tmp_path / "ws" / "world" / "tasks" / "shapes"),  # outside: absolute
        "pool": str(tmp_path / "ws" / "world" / "pool" / "pool.parquet"),
    }
    # Unknown model (a hub CLIP), pool and task: the job's defaults stay (base: the embedded tiny CLIP).
    bare = react_customize_values(handoff(tmp_path, model_dir=None, pool=None, task_dir=None))
    assert bare == {"subset": "runs/react/exports/s.parquet", "classes": "circle, square"}
    assert job_path(tmp_path / "x" / ".." / "y", project_root=tmp_path) == "y"


def test_a_preset_switch_keeps_the_prefill_and_the_users_edits(tmp_path):
    prefilled = form_params(REACT, "synthworld", react_customize_values(handoff(tmp_path)))
    assert prefilled["preset"] == "synthworld" and prefilled["config"] == "synthworld"
    assert prefilled["max_steps"] is None and prefilled["gamma"] == 0.9
    prefilled["gamma"] = 0.5  # the user's edit
    tiny = switch_preset(REACT, json.dumps(prefilled), "tiny")
    assert tiny == {
        "preset": "tiny",
        **REACT.defaults(),
        "config": "tiny",
        "max_steps": 4,  # the tiny preset's own values
        "gamma": 0.5,
        **react_customize_values(handoff(tmp_path)),
    }
    # Back to synthworld: tiny's own values go, the edits stay.
    back = switch_preset(REACT, json.dumps(tiny), "synthworld")
    assert back["config"] == "synthworld" and back["max_steps"] is None and back["gamma"] == 0.5
    assert back["subset"] == "runs/react/exports/s.parquet"
    # Text that is not a JSON object (or unknown keys) starts over from the preset.
    assert switch_preset(REACT, "{not json", "tiny") == form_params(REACT, "tiny")
    assert "bogus" not in switch_preset(REACT, json.dumps({"bogus": 1}), "tiny")


def test_before_after_rows_by_hand():
    report = {
        "model": "m",
        "baseline": "b",
        "before": {"species": {"top1": 0.5, "top5": 0.875}, "shapes": {"top1": 0.8, "top5": None}},
        "after": {"species": {"top1": 0.625, "top5": 0.8125}, "shapes": {"top1": 0.7, "top5": None}},
    }
    assert before_after_rows(report) == [
        ["species", "top-1", "50.0", "62.5", "+12.5"],
        ["species", "top-5", "87.5", "81.2", "-6.2"],  # 81.25 and -6.25 round half to even
        ["shapes", "top-1", "80.0", "70.0", "-10.0"],  # no top-5 row: neither side has one (<= 5 classes)
    ]
    only_after = {"model": "m", "tasks": {"colors": {"top1": 0.25, "top5": None}}}
    assert before_after_rows(only_after) == [["colors", "top-1", "-", "25.0", "-"]]


def test_reports_are_read_only_for_finished_react_jobs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    done = record(type="react-customize", state="succeeded")
    assert read_report(done, run) is None  # no report yet
    (run / "zeroshot.json").write_text(json.dumps({"before": {}, "after": {"t": {"top1": 1.0}}}))
    assert read_report(done, run)["after"] == {"t": {"top1": 1.0}}
    assert read_report(record(type="react-customize", state="running"), run) is None
    assert read_report(record(type="llava-eval", state="succeeded"), run) is None
    (run / "zeroshot.json").write_text("[1, 2]")
    assert read_report(done, run) is None
    (run / "zeroshot.json").write_text("{broken")
    assert read_report(done, run) is None


def test_reindex_needs_a_finished_customization_with_its_pool(tmp_path):
    run = tmp_path / "run"
    params = {"pool": "data/pool.parquet", "subset": "s.parquet"}
    done = record(type="react-customize", state="succeeded", params=params)
    with pytest.raises(ReindexError, match="not a finished react-customize job"):
        reindex_values(done, run)  # no final/ yet
    (run / "final").mkdir(parents=True)
    (run / "final" / "open_clip_config.json").write_text("{}")
    assert customized_model(run) == run / "final"
    assert reindex_values(done, run) == {"pool": "data/pool.parquet", "model": str(run / "final")}
    with pytest.raises(ReindexError, match="records no pool"):
        reindex_values(record(type="react-customize", state="succeeded", params={"pool": ""}), run)
    with pytest.raises(ReindexError, match="not a finished"):
        reindex_values(record(type="react-eval", state="succeeded", params=params), run)


def test_actions_prefill_the_form_start_it_and_reindex_with_the_result(tmp_path):
    ws = tmp_path / "ws"
    world = ws / "world"
    (world / "tasks" / "shapes").mkdir(parents=True)
    (world / "pool").mkdir()
    (world / "pool" / "pool.parquet").write_bytes(b"PAR1")
    subset = ws / "s.parquet"
    subset.write_bytes(b"PAR1")
    settings = LauncherSettings(workspace=ws)
    actions = LauncherActions(JobManager(ws), settings)
    given = handoff(tmp_path, subset=subset)
    job_type, preset, params, status = actions.react_customize_form(given)
    assert isinstance(job_type, gr.Dropdown) and job_type.value == "react-customize"
    assert preset.value == "synthworld" and set(preset.choices) == {
        ("tiny", "tiny"),
        ("synthworld", "synthworld"),
    }
    assert "Prefilled a **react-customize** job" in status and "`s.parquet` (40 rows, 2 classes)" in status
    assert json.loads(params)["eval_task"] == str(world / "tasks" / "shapes")
    # The prefilled form, switched to tiny, is valid as it stands: Start queues it.
    job_id = actions.start("react-customize", actions.preset_picked("react-customize", "tiny", params))
    job = actions.manager.registry.get(job_id)
    assert job.params["classes"] == "circle, square" and job.params["config"] == "tiny"
    argv = REACT.argv(REACT.params_from(job.params, workspace=ws), ws / "run")
    assert argv[argv.index("--eval-task") + 1] == str(world / "tasks" / "shapes")
    assert argv[argv.index("--eval-classes") + 1] == "circle, square"
    with pytest.raises(gr.Error, match="export the subset first"):
        actions.react_customize_form(None)
    # Finished, with its model: re-index queues an index-build job on that model and the recorded pool.
    with pytest.raises(gr.Error, match="not a finished react-customize job"):
        actions.reindex(job_id)
    registry = actions.manager.registry
    registry.transition(job_id, "running", started=1.0)
    registry.transition(job_id, "succeeded", ended=2.0, exit_code=0)
    final = actions.manager.run_dir(job) / "final"
    final.mkdir(parents=True)
    (final / "open_clip_config.json").write_text("{}")
    reindex = registry.get(actions.reindex(job_id))
    assert reindex.type == "index-build" and reindex.state == "queued"
    assert reindex.params == {
        "pool": str(world / "pool" / "pool.parquet"),
        "model": str(final),
        "batch_size": 256,
    }
    *_, table, button = actions.refresh(job_id)
    assert table.visible is False and button.visible is True  # no zeroshot.json: no table, but the model
