"""Issue 19, defect 7 of the issue: the app's file route serves what the pages show (shown images, exports) and
nothing else of the pool folder, ``pool_truth.parquet`` (SynthWorld's evaluation answers) least of all."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio.utils import is_allowed_file
from PIL import Image

from react_explorer.retrieval.algorithms import ClassHit, PromptQuery
from react_explorer.retrieval.class_queries import ClassRetrieval
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.explorer_handlers import ExplorerHandlers
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.explorer_tab import tab_from_services
from react_explorer.ui.results_view import result_items
from react_explorer.ui.served_images import ServedImages


def _world(tmp_path: Path) -> tuple[ExplorerConfig, Path, Path]:
    cfg = ExplorerConfig.tiny(tmp_path)
    pool = cfg.world / "pool"
    (pool / "images").mkdir(parents=True)
    truth = pool / "pool_truth.parquet"
    truth.write_bytes(b"PAR1 the answers PAR1")
    image = pool / "images" / "0.png"
    Image.new("RGB", (8, 8), "red").save(image)
    return cfg, truth, image


def _served(path: Path, allowed: tuple[str, ...]) -> bool:
    return is_allowed_file(path, blocked_paths=[], allowed_paths=list(allowed), created_paths=[])[0]


def test_the_explorer_serves_no_folder_but_the_exports(tmp_path):
    cfg, truth, image = _world(tmp_path)
    tab = tab_from_services(ExplorerServices(cfg))
    assert not _served(truth, tab.allowed_paths)
    assert not _served(image, tab.allowed_paths)  # shown images are staged copies instead
    assert _served(cfg.export_dir / "subset.parquet", tab.allowed_paths)


def test_galleries_show_staged_copies_outside_the_pool(tmp_path):
    cfg, truth, image = _world(tmp_path)
    services = ExplorerServices(cfg)
    retrieval = ClassRetrieval((PromptQuery("a", "{}", "a"),), {"a": [ClassHit(0, 0.9, "a", (("a", 0.9),)),
                               ClassHit(1, 0.8, "a", (("a", 0.8),))]}, {})  # fmt: skip
    rows = {0: {"caption": "red", "image_path": str(image)}, 1: {"caption": "x", "image_path": str(truth)}}
    items = result_items(retrieval, rows)["a"]
    handlers = ExplorerHandlers(services)
    shown, caption = handlers._media(items[0], services.allowed_roots(), "placeholder")
    assert Path(shown).read_bytes() == image.read_bytes() and caption.startswith("0.900")
    assert Path(tempfile.gettempdir()) in Path(shown).parents  # Gradio accepts it as output; no folder served
    assert cfg.world not in Path(shown).parents
    assert (
        handlers._media(items[1], services.allowed_roots(), "placeholder")[0] == "placeholder"
    )  # not an image
    services.close()
    assert not Path(shown).exists()


def test_staging_follows_changes_and_refuses_non_images(tmp_path):
    shown = ServedImages(tmp_path / "shown")
    source = tmp_path / "a.PNG"
    Image.new("RGB", (4, 4), "blue").save(source, format="PNG")
    first = shown.stage(source)
    assert shown.stage(source) == first and first.endswith(".png")
    Image.new("RGB", (5, 5), "green").save(source, format="PNG")
    second = shown.stage(source)
    assert second != first and Path(second).read_bytes() == source.read_bytes()
    for bad in (tmp_path / "pool_truth.parquet", tmp_path / "missing.png", tmp_path):
        if bad.suffix == ".parquet":
            bad.write_bytes(b"x")
        assert shown.stage(bad) is None


@pytest.mark.slow
def test_the_running_app_refuses_the_pool_truth_by_url(tmp_path):
    cfg, truth, image = _world(tmp_path)
    tab = tab_from_services(ExplorerServices(cfg))
    with gr.Blocks() as demo:
        tab.build()
    _, url, _ = demo.launch(prevent_thread_lock=True, allowed_paths=list(tab.allowed_paths), quiet=True)
    try:
        for path in (truth, image):
            response = httpx.get(f"{url}gradio_api/file={path}", timeout=10)
            assert response.status_code == 403, (path, response.status_code)
        export = cfg.export_dir / "one.parquet"
        export.parent.mkdir(parents=True)
        export.write_bytes(b"PAR1")
        assert httpx.get(f"{url}gradio_api/file={export}", timeout=10).status_code == 200
    finally:
        demo.close()
        tab.close()
