"""The app's shell: one ``gr.Blocks`` whose tabs come from the pillar packages, and its launch.

The shell is the top layer: it imports each pillar's tab factory directly (``DEFAULT_TABS``). A factory takes
the settings that tab owns and returns an ``AppTab`` (``vision_common.app_tab``), or None when the tab cannot
run in this environment. The flows between tabs are wired here from what the tabs' builds return (``flows``). The factory should be cheap: heavy work belongs in ``AppTab.startup`` (run before
serving) and resources are released by ``AppTab.close``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

from app_shell.flows import wire_flows
from app_shell.settings import AppSettings
from llava_demo.ui.chat_tab import chat_tab
from react_explorer.ui.explorer_tab import react_explorer_tab
from trainer.launcher.tab import launcher_tab
from vision_common.app_tab import AppTab

# Set before Gradio is imported: its version check and usage analytics are network calls (gradio.md §11).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

log = logging.getLogger("app_shell.shell")
APP_TITLE = "Steerable visual intelligence"
# Uploaded files and rendered pictures are deleted from Gradio's cache after a day, checked hourly.
CACHE_CLEANUP = (3600, 86400)
QUEUE_MAX_SIZE = 64

TabFactory = Callable[[AppSettings], "AppTab | None"]
# One entry per tab, in tab order: each hands its own settings to its pillar's factory.
DEFAULT_TABS: tuple[TabFactory, ...] = (
    lambda settings: chat_tab(settings.chat),
    lambda settings: react_explorer_tab(settings.explorer),
    lambda settings: launcher_tab(settings.launcher),
)


class TabLoadError(RuntimeError):
    """A tab factory returned something that is not a tab, or two tabs share an id."""


def make_tabs(settings: AppSettings, factories: Sequence[TabFactory] = DEFAULT_TABS) -> list[AppTab]:
    """Call every factory; tabs that return None are left out (with a log line saying so)."""
    tabs = []
    for position, factory in enumerate(factories):
        tab = factory(settings)
        if tab is None:
            log.info("tab %d is not available here; left out", position)
            continue
        if not isinstance(tab, AppTab):
            raise TabLoadError(f"tab factory {position} returned {type(tab).__name__}, not an AppTab")
        tabs.append(tab)
    ids = [tab.tab_id for tab in tabs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TabLoadError(f"two tabs share the id {duplicates[0]!r}")
    return tabs


def build_app(settings: AppSettings, tabs: Sequence[AppTab]) -> gr.Blocks:
    """The Blocks app with one tab per ``AppTab`` and a queue limited to ``settings.chat.concurrency``."""
    if not tabs:
        raise TabLoadError("no tabs to show")
    with gr.Blocks(title=APP_TITLE, analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(
            f"## {APP_TITLE}\nLLaVA-NeXT visual chat with AnyRes and REACT retrieval, running offline."
        )
        ports: dict[str, object] = {}
        with gr.Tabs() as tab_set:
            for tab in tabs:
                with gr.Tab(tab.title, id=tab.tab_id):
                    ports[tab.tab_id] = tab.build()
        wired = wire_flows(tab_set, ports)
        log.info("one-click flows between tabs: %s", ", ".join(wired) or "none")
    # Events that generate set their own limit (concurrency_id "generate"); the rest are cheap.
    demo.queue(default_concurrency_limit=settings.chat.concurrency, max_size=QUEUE_MAX_SIZE)
    return demo


def launch(
    demo: gr.Blocks, settings: AppSettings, tabs: Sequence[AppTab], *, block: bool = True
) -> tuple[object, str]:
    """Serve ``demo``: no share link, no analytics, no SSR (client rendering needs no Node). Returns
    (FastAPI app, local URL); with ``block=False`` it returns once the server answers."""
    allowed = sorted({path for tab in tabs for path in tab.allowed_paths})
    app, local_url, _share = demo.launch(
        server_name=settings.chat.host,
        server_port=settings.chat.port or _free_port(settings.chat.host),
        share=False,
        max_file_size=f"{settings.chat.max_upload_mb}mb",
        allowed_paths=allowed,
        ssr_mode=False,
        show_error=True,
        prevent_thread_lock=not block,
        quiet=False,
    )
    return app, local_url


def run_startup(tabs: Sequence[AppTab]) -> None:
    for tab in tabs:
        if tab.startup is not None:
            tab.startup()


def close_tabs(tabs: Sequence[AppTab]) -> None:
    for tab in tabs:
        if tab.close is not None:
            try:
                tab.close()
            except Exception:  # noqa: BLE001 - closing one tab must not keep the others open
                log.exception("closing tab %s failed", tab.tab_id)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host if host != "0.0.0.0" else "", 0))
        return int(probe.getsockname()[1])
