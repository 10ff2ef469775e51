"""Issue 19: the embedded index's build progress as a percentage. A real build (toy pool, random-weight tiny CLIP,
the same code the app runs) reports every batch of images, then of captions, then the indexing, and the
background build turns the latest report into the line every visitor's page shows."""

from __future__ import annotations

import pytest

from react_explorer.index.progress import BuildProgress
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.explorer_handlers import ExplorerHandlers
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.index_sources import EMBEDDED, build_embedded_index
from tests.support.react_support import save_random_tiny_clip, write_toy_pool

POOL = 40
BATCH = 16  # ExplorerConfig.tiny's build batch size


def test_percent_weighs_images_captions_and_holds_99_while_indexing():
    assert BuildProgress("images", 0, 30_000).describe() == "0% (0 / 30,000 images)"
    # 12,600 images of 30,000 images + 30,000 captions at 0.15 image each: 12,600 / 34,500 = 36.5%
    assert BuildProgress("images", 12_600, 30_000).describe() == "36% (12,600 / 30,000 images)"
    assert BuildProgress("images", 30_000, 30_000).percent == 86  # 30,000 / 34,500
    assert BuildProgress("captions", 30_000, 30_000).percent == 99  # 100% only once the build is over
    assert BuildProgress("captions", 500, 1000, with_images=False).percent == 50
    assert (
        BuildProgress("index", 30_000, 30_000).describe() == "99% (30,000 pairs embedded; writing the index)"
    )
    with pytest.raises(ValueError, match="done must be in"):
        BuildProgress("images", 5, 4)
    with pytest.raises(ValueError, match="stage must be one of"):
        BuildProgress("tokens", 0, 4)


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    clip = save_random_tiny_clip(root)
    write_toy_pool(root / "world" / "pool", count=POOL)
    return root, clip


def test_a_real_build_reports_each_batch_in_order(toy_world, tmp_path):
    root, clip = toy_world
    cfg = ExplorerConfig.tiny(tmp_path, world=root / "world", clip_dir=clip)
    reports: list[BuildProgress] = []
    build_embedded_index(cfg, tmp_path / "index", progress=False, on_progress=reports.append)
    assert [(report.stage, report.done) for report in reports] == [
        ("images", 0), ("images", 16), ("images", 32), ("images", 40),
        ("captions", 16), ("captions", 32), ("captions", 40), ("index", 40),
    ]  # fmt: skip
    assert all(report.total == POOL for report in reports)
    percents = [report.percent for report in reports]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 99
    assert reports[2].describe() == "69% (32 / 40 images)"  # 32 / (40 * 1.15)


def test_every_visitor_reads_the_background_builds_percentage(toy_world, tmp_path):
    root, clip = toy_world
    cfg = ExplorerConfig.tiny(tmp_path, world=root / "world", clip_dir=clip, background_build=True)
    services = ExplorerServices(cfg)
    seen: list[str] = []
    handlers = ExplorerHandlers(services)
    original = services.background.report

    def report_and_look(progress: BuildProgress) -> None:
        original(progress)
        seen.append(handlers.index_info(EMBEDDED))  # what a page asking now is shown

    services.background.report = report_and_look
    assert services.start_background_build()
    state = services.background.wait(120)
    assert not state.running and state.error is None, state
    assert seen[0].startswith("Building the embedded SynthWorld index: 0% (0 / 40 images), ")
    assert any(
        line.startswith("Building the embedded SynthWorld index: 69% (32 / 40 images)") for line in seen
    )
    assert seen[-1].startswith(
        "Building the embedded SynthWorld index: 99% (40 pairs embedded; writing the index)"
    )
    assert handlers.index_info(EMBEDDED).startswith(
        f"{POOL} pairs, 32-d"
    )  # built: the index itself is described
    assert services.background.describe().startswith("The embedded index was built in ")
    services.close()
