"""Issue 19, defect 5 of the issue (first-use waits): the embedded index is built in the background from app
start; every visitor reads the same progress line, and a retrieval on it is answered at once while it runs
instead of holding the retrieval queue."""

from __future__ import annotations

import threading
import time

import pytest

from react_explorer.errors import IndexLoadError
from react_explorer.index.progress import BuildProgress
from react_explorer.ui import explorer_services
from react_explorer.ui.background_build import BackgroundBuild
from react_explorer.ui.explorer_config import (
    ExplorerConfig,
    add_explorer_arguments,
    explorer_config_from_args,
)
from react_explorer.ui.explorer_handlers import ExplorerHandlers
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.explorer_tab import tab_from_services
from react_explorer.ui.index_sources import EMBEDDED
from tests.support.react_support import write_toy_pool


def test_one_build_one_progress_line():
    now = [100.0]
    build = BackgroundBuild(clock=lambda: now[0])
    release, reported = threading.Event(), threading.Event()

    def slow(report):
        report(BuildProgress("images", 12_600, 30_000))
        reported.set()
        release.wait()

    assert build.describe() == ""
    assert build.start(slow) and not build.start(slow)  # at most one build
    now[0] = 142.0
    assert reported.wait(5) and build.state().running
    assert build.describe().startswith(
        # 12,600 images of 30,000 images + 30,000 captions at 0.15 image each: 12,600 / 34,500 = 36.5%
        "Building the embedded SynthWorld index: 36% (12,600 / 30,000 images), 42 s so far"
    )
    release.set()
    assert not build.wait(5).running
    assert build.describe() == "The embedded index was built in 42 s."

    failing = BackgroundBuild(clock=lambda: now[0])
    failing.start(lambda report: 1 / 0)
    assert failing.wait(5).error == "ZeroDivisionError: division by zero"
    assert "failed after 0 s" in failing.describe()


@pytest.fixture()
def building(tmp_path, monkeypatch):
    write_toy_pool(tmp_path / "world" / "pool", count=4)
    release, calls = threading.Event(), []

    def slow_build(cfg, out, *, progress=True, on_progress=None):
        calls.append(out)
        release.wait(30)
        return 1.0

    monkeypatch.setattr(explorer_services, "build_embedded_index", slow_build)
    services = ExplorerServices(ExplorerConfig.tiny(tmp_path, background_build=True))
    tab = tab_from_services(services)
    tab.startup()  # what the app runs before serving
    yield services, calls
    release.set()
    services.background.wait(10)


def test_app_start_builds_and_retrieval_is_answered_at_once_meanwhile(building):
    services, calls = building
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 1 and services.background.state().running
    handlers = ExplorerHandlers(services)
    assert "Building the embedded SynthWorld index: 0%" in handlers.index_info(
        EMBEDDED
    )  # every visitor's line
    start = time.perf_counter()
    with pytest.raises(
        IndexLoadError, match="Building the embedded SynthWorld index.*Retrieve again when it is ready"
    ):
        services.open_index(EMBEDDED)
    assert time.perf_counter() - start < 0.5  # not waiting for the build
    line, timer = handlers.build_tick(EMBEDDED)
    assert "Building the embedded" in line and timer.active


def test_opting_out_and_the_flag(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_explorer_arguments(parser)
    assert explorer_config_from_args(parser.parse_args([])).background_build
    assert not explorer_config_from_args(parser.parse_args(["--react-no-background-build"])).background_build
    write_toy_pool(tmp_path / "world" / "pool", count=4)
    services = ExplorerServices(ExplorerConfig.tiny(tmp_path, background_build=False))
    assert not services.start_background_build() and services.background.state().started is None
