"""The contract between the app shell and the tabs the pillars contribute: a tab is an ``AppTab`` value.

It lives in the shared layer so that a pillar can build its tab without importing the shell (which imports every
pillar) or another pillar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AppTab:
    """One tab: ``build`` creates its components and events inside the ``gr.Tab`` context."""

    title: str
    tab_id: str
    build: Callable[[], None]
    startup: Callable[[], None] | None = None
    close: Callable[[], None] | None = None
    allowed_paths: tuple[str, ...] = ()
    """Folders whose files the tab shows (Gradio serves only the cwd, its temp dir and these)."""
