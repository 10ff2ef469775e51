"""The shell wires "Customize CLIP on this subset" from the explorer's ports to the launcher's: the button's click
selects the launcher tab and fills its form; an export shows the button. With the launcher off (beyond loopback,
no token) nothing is wired and the button stays hidden. Built in-process, nothing served."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from app_shell.settings import AppSettings
from app_shell.shell import DEFAULT_TABS, build_app, make_tabs
from llava_demo.ui.settings import ChatSettings
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.subset_handoff import SubsetHandoff
from trainer.launcher.settings import LauncherSettings
from vision_common.paths import PROJECT_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Gradio: dropdown values set before choices


def build(tmp_path: Path, launcher: LauncherSettings) -> gr.Blocks:
    settings = AppSettings(
        chat=ChatSettings.tiny(), explorer=ExplorerConfig.tiny(tmp_path), launcher=launcher
    )
    return build_app(settings, make_tabs(settings, DEFAULT_TABS[1:]))  # the explorer and the launcher


def by_elem_id(demo: gr.Blocks, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def listeners_of(demo: gr.Blocks, block, event: str):
    return [fn for fn in demo.fns.values() if (block._id, event) in fn.targets]


def test_customize_opens_the_launcher_with_the_react_job_prefilled(tmp_path):
    demo = build(tmp_path, LauncherSettings(workspace=tmp_path / "ws"))
    button = by_elem_id(demo, "react-customize")
    assert button.visible is False  # until an export
    (click,) = listeners_of(demo, button, "click")
    tabs = next(block for block in demo.blocks.values() if isinstance(block, gr.Tabs))
    form = [
        by_elem_id(demo, name)
        for name in ("launcher-type", "launcher-preset", "launcher-params", "launcher-status")
    ]
    assert click.outputs[: len(form) + 1] == [tabs, *form]
    fields = click.outputs[len(form) + 1 :]  # every type's form fields: the prefill fills the react job's
    assert by_elem_id(demo, "launcher-field-react-customize-subset") in fields
    handoff = SubsetHandoff(subset=PROJECT_ROOT / "runs" / "react" / "exports" / "x.parquet", class_names=("a", "b"),
                            model_dir=None, pool=None, task_dir=None, rows=9)  # fmt: skip
    selected, job_type, preset, params, status, *updates = click.fn(handoff)
    assert selected.selected == "launcher"
    assert (job_type.value, preset.value) == ("react-customize", "synthworld")
    assert (
        json.loads(params)["subset"] == "runs/react/exports/x.parquet" and "reports no before/after" in status
    )
    assert len(updates) == len(fields)
    filled = {
        field.elem_id.removeprefix("launcher-field-react-customize-"): update["value"]
        for field, update in zip(fields, updates)
        if field.elem_id.startswith("launcher-field-react-customize-")
    }
    assert filled["subset"] == "runs/react/exports/x.parquet" and filled["classes"] == "a, b"
    assert filled["config"] == "synthworld" and filled["eval_task"] == "" and filled["pool"] == ""
    # The export's state change shows the button (and a cleared state hides it).
    (shown,) = [fn for fn in demo.fns.values() if fn.outputs == [button]]
    assert shown.fn(handoff).visible is True and shown.fn(None).visible is False


def test_without_the_launcher_no_flow_is_wired(tmp_path):
    off = LauncherSettings(workspace=tmp_path / "ws", enabled=False, disabled_reason="off for the test")
    demo = build(tmp_path, off)
    button = by_elem_id(demo, "react-customize")
    assert button.visible is False and listeners_of(demo, button, "click") == []
