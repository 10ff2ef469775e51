"""The app's shell: one ``gr.Blocks`` whose tabs come from the pillar packages, and its launch.

A pillar adds a tab by listing its factory in ``TAB_FACTORIES`` ("module:function"). A factory takes the
``AppSettings`` and returns an ``AppTab`` (or None when the tab cannot run in this environment, e.g. a training
launcher on ZeroGPU). The factory should be cheap: heavy work belongs in ``AppTab.startup`` (run before serving)
and resources are released by ``AppTab.close``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llava_demo.ui.settings import AppSettings

# Set before Gradio is imported: its version check and usage analytics are network calls (gradio.md §11).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

log = logging.getLogger("app_shell.shell")
APP_TITLE = "Steerable visual intelligence"
# Each pillar package appends its tab factory here; the order is the tab order.
TAB_FACTORIES: tuple[str, ...] = (
    "llava_demo.ui.chat_tab:chat_tab",
    "react_explorer.ui.explorer_tab:react_explorer_tab",
)
# Uploaded files and rendered pictures are deleted from Gradio's cache after a day, checked hourly.
CACHE_CLEANUP = (3600, 86400)
QUEUE_MAX_SIZE = 64


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


TabFactory = Callable[[AppSettings], "AppTab | None"]


class TabLoadError(RuntimeError):
    """A tab factory named in ``TAB_FACTORIES`` cannot be imported or built."""


def load_factory(spec: str) -> TabFactory:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise TabLoadError(f"tab factory {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TabLoadError(f"tab factory {spec!r}: cannot import {module_name}: {exc}") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TabLoadError(f"tab factory {spec!r}: {module_name} has no function {attribute!r}")
    return factory


def make_tabs(settings: AppSettings, specs: Sequence[str] = TAB_FACTORIES) -> list[AppTab]:
    """Call every factory; tabs that return None are left out (with a log line saying so)."""
    tabs = []
    for spec in specs:
        tab = load_factory(spec)(settings)
        if tab is None:
            log.info("tab %s is not available here; left out", spec)
            continue
        if not isinstance(tab, AppTab):
            raise TabLoadError(f"tab factory {spec!r} returned {type(tab).__name__}, not an AppTab")
        tabs.append(tab)
    ids = [tab.tab_id for tab in tabs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TabLoadError(f"two tabs share the id {duplicates[0]!r}")
    return tabs


def build_app(settings: AppSettings, tabs: Sequence[AppTab]) -> gr.Blocks:
    """The Blocks app with one tab per ``AppTab`` and a queue limited to ``settings.concurrency``."""
    if not tabs:
        raise TabLoadError("no tabs to show")
    with gr.Blocks(title=APP_TITLE, analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(
            f"## {APP_TITLE}\nLLaVA-NeXT visual chat with AnyRes and REACT retrieval, running offline."
        )
        with gr.Tabs():
            for tab in tabs:
                with gr.Tab(tab.title, id=tab.tab_id):
                    tab.build()
    # Events that generate set their own limit (concurrency_id "generate"); the rest are cheap.
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=QUEUE_MAX_SIZE)
    return demo


def launch(
    demo: gr.Blocks, settings: AppSettings, tabs: Sequence[AppTab], *, block: bool = True
) -> tuple[object, str]:
    """Serve ``demo``: no share link, no analytics, no SSR (client rendering needs no Node). Returns
    (FastAPI app, local URL); with ``block=False`` it returns once the server answers."""
    allowed = sorted({path for tab in tabs for path in tab.allowed_paths})
    app, local_url, _share = demo.launch(
        server_name=settings.host,
        server_port=settings.port or _free_port(settings.host),
        share=False,
        max_file_size=f"{settings.max_upload_mb}mb",
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
    import socket

    with socket.socket() as probe:
        probe.bind((host if host != "0.0.0.0" else "", 0))
        return int(probe.getsockname()[1])
