"""One-click flows between tabs. Only the shell sees every tab (and the ``gr.Tabs`` that selects one), and only it
may import both the explorer and the launcher, so the flows are wired here from the tabs' ports
(``AppTab.build``'s return values).

* **Customize CLIP on this subset**: after an export, the explorer's button opens the launcher tab with a
  ``react-customize`` job prefilled from the export (``trainer.launcher.prefill``); the user presses Start.

A flow whose tabs are not both there (the launcher is off beyond loopback without a token) is not wired, and its
button stays hidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr

from react_explorer.ui.explorer_tab import ExplorerPorts
from react_explorer.ui.subset_handoff import SubsetHandoff
from trainer.launcher.tab import LauncherPorts

PRIVATE: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None}
EXPLORER_TAB, LAUNCHER_TAB = "react", "launcher"  # the tabs' ids (AppTab.tab_id)


def wire_flows(tabs: gr.Tabs, ports: Mapping[str, object]) -> list[str]:
    """Wire every flow whose tabs are present (``ports`` by tab id); returns the names of the wired flows."""
    wired = []
    if customize_clip_flow(tabs, ports):
        wired.append("customize-clip")
    return wired


def customize_clip_flow(tabs: gr.Tabs, ports: Mapping[str, object]) -> bool:
    explorer, launcher = ports.get(EXPLORER_TAB), ports.get(LAUNCHER_TAB)
    if not isinstance(explorer, ExplorerPorts) or not isinstance(launcher, LauncherPorts):
        return False

    def show(handoff: SubsetHandoff | None) -> Any:
        return gr.Button(visible=handoff is not None)

    def open_launcher(handoff: SubsetHandoff | None) -> tuple[Any, ...]:
        return (gr.Tabs(selected=LAUNCHER_TAB), *launcher.react_customize_form(handoff))

    explorer.subset_handoff.change(show, [explorer.subset_handoff], [explorer.customize], **PRIVATE)
    explorer.customize.click(open_launcher, [explorer.subset_handoff], [tabs, *launcher.form], **PRIVATE)
    return True
