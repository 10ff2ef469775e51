"""The contract between the app shell and the tabs the pillars contribute: a tab is an ``AppTab`` value.

It lives in the shared layer so that a pillar can build its tab without importing the shell (which imports every
pillar) or another pillar. A flow between tabs (the explorer's export -> the launcher's REACT job) is wired by the
shell from the tabs' *ports*: what ``build`` returns, a value whose type the pillar defines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AppTab:
    """One tab: ``build`` creates its components and events inside the ``gr.Tab`` context and returns the tab's
    ports (components other tabs' flows may wire to), or None."""

    title: str
    tab_id: str
    build: Callable[[], object]
    startup: Callable[[], None] | None = None
    close: Callable[[], None] | None = None
    allowed_paths: tuple[str, ...] = ()
    """Folders whose files the tab shows (Gradio serves only the cwd, its temp dir and these)."""
