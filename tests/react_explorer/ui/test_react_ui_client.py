"""The REACT explorer tab served in-process and driven through its named API with ``gradio_client``.

A 24-pair toy pool and a random-weight tiny CLIP (tests/support/react_support.py): with random weights a T2T
query equal to a caption still returns exactly the rows with that caption at similarity 1, so results are
checked by id. The toy pool is both the "embedded" world (built on first use into the cache) and, indexed by
the CLI under runs/react/, a user-built index.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_shell.settings import AppSettings
from app_shell.shell import build_app, launch
from llava_demo.ui.settings import ChatSettings
from react_explorer.cli.build_index import main as build_main
from react_explorer.cli.retrieve import main as retrieve_main
from react_explorer.embedding.model_spec import DEFAULT_MODEL_DIR
from react_explorer.index.manifest import MANIFEST_NAME
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.explorer_tab import tab_from_services
from react_explorer.ui.index_sources import EMBEDDED, embedded_index_dir
from tests.support.react_support import save_random_tiny_clip, toy_caption, write_toy_pool

POOL_SIZE = 24
CLASSES = "red square, blue circle"
# Serves the app over HTTP (slow); gradio_client warns about a pandas deprecation we do not control.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]


def expected_ids(name: str) -> set[int]:
    return {i for i in range(POOL_SIZE) if toy_caption(i) == name}  # 3 rows each in 24


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("react_ui")
    clip = save_random_tiny_clip(root)
    world = root / "world"
    write_toy_pool(world / "pool", count=POOL_SIZE)
    (world / "manifest.json").write_text(json.dumps({"preset": "toy"}))
    (world / "tasks" / "colors").mkdir(parents=True)
    (world / "tasks" / "colors" / "classes.txt").write_text("red square\nblue circle\n")
    user_index = root / "runs" / "react" / "toy"
    rc = build_main(["--pool", str(world / "pool" / "pool.parquet"), "--out", str(user_index), "--model",
                     f"local-dir:{clip}", "--workers", "0", "--batch-size", "8", "--no-progress"])  # fmt: skip
    assert rc == 0
    (root / "exact.txt").write_text("{}\n")
    (root / "broken.txt").write_text("a photo of a thing\n")
    cfg = ExplorerConfig.tiny(root, world=world, clip_dir=clip)
    services = ExplorerServices(cfg)
    tab = tab_from_services(services)
    settings = AppSettings(chat=ChatSettings.tiny())
    demo = build_app(settings, [tab])
    _app, url = launch(demo, settings, [tab], block=False)
    try:
        yield SimpleNamespace(
            url=url, root=root, cfg=cfg, services=services, user_index=user_index, clip=clip
        )
    finally:
        demo.close()
        services.close()


def client(served) -> Client:
    return Client(served.url, verbose=False)


def retrieve(c: Client, index: str, classes: str = CLASSES, **options):
    template_file = options.pop("template_file", None)
    return c.predict(
        index,
        classes,
        options.pop("templates", "file"),
        handle_file(str(template_file)) if template_file else None,
        options.pop("mode", "t2t"),
        options.pop("k", 6),
        options.pop("dedup", False),
        options.pop("model", ""),
        api_name="/react_retrieve",
    )


def test_public_api(served):
    named = client(served).view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert sorted(named) == ["/react_export", "/react_more_like_this", "/react_retrieve"]


def test_embedded_pool_is_indexed_on_first_use_into_a_folder_keyed_by_the_weights(served):
    target = embedded_index_dir(served.cfg)
    assert not target.exists()
    result = retrieve(client(served), EMBEDDED, template_file=served.root / "exact.txt")
    assert target.parent == served.cfg.cache_root and target.name.startswith("world-")
    assert target.name.endswith(served.services.cfg.clip_dir.name) is False  # keyed by hash, not by name
    assert (target / MANIFEST_NAME).is_file() and served.services.last_build_seconds > 0
    for name in ("red square", "blue circle"):
        results = result["classes"][name]["results"]
        assert len(results) == 6
        assert {r["id"] for r in results[:3]} == expected_ids(name)
        assert all(abs(r["similarity"] - 1.0) < 2e-3 for r in results[:3])
        assert all(r["caption"] == name for r in results[:3])
    built_at = (target / MANIFEST_NAME).stat().st_mtime_ns
    retrieve(client(served), EMBEDDED, template_file=served.root / "exact.txt")
    assert (target / MANIFEST_NAME).stat().st_mtime_ns == built_at  # the second use does not rebuild


def test_coverage_statistics_match_the_returned_ids(served):
    result = retrieve(client(served), str(served.user_index), template_file=served.root / "exact.txt", k=10)
    ids = {name: {r["id"] for r in block["results"]} for name, block in result["classes"].items()}
    coverage = result["coverage"]
    red, blue = ids["red square"], ids["blue circle"]
    assert coverage["pairs"] == [len(red), len(blue)] == [10, 10]
    assert coverage["overlap"] == [[10, len(red & blue)], [len(red & blue), 10]]
    assert coverage["exclusive"] == [len(red - blue), len(blue - red)]
    assert coverage["total_unique"] == len(red | blue)
    assert np.sum(coverage["histogram_counts"]) == 20
    sims = [r["similarity"] for block in result["classes"].values() for r in block["results"]]
    assert coverage["histogram_edges"][0] == pytest.approx(min(sims), abs=1e-5)
    assert coverage["histogram_edges"][-1] == pytest.approx(max(sims), abs=1e-5)


def test_export_equals_the_retrieve_cli_and_more_like_this_finds_the_row(served, tmp_path):
    c = client(served)
    retrieve(c, str(served.user_index), template_file=served.root / "exact.txt", dedup=True, k=5)
    path, info = c.predict("toy_subset", api_name="/react_export")
    exported = served.cfg.export_dir / "toy_subset.parquet"
    distinct = len(set(pq.read_table(exported).column("id").to_pylist()))
    assert info == {
        "file": str(exported),
        "rows": info["rows"],
        "dropped_missing": 0,
        "distinct_pairs": distinct,
    }
    assert pq.read_table(path).equals(pq.read_table(exported))
    cli_out = tmp_path / "cli.parquet"
    rc = retrieve_main(["--index", str(served.user_index), "--classes", CLASSES, "--templates",
                        str(served.root / "exact.txt"), "--mode", "t2t", "--k", "5", "--out", str(cli_out)])  # fmt: skip
    assert rc == 0
    assert pq.read_table(exported).to_pylist() == pq.read_table(cli_out).to_pylist()
    assert info["rows"] == pq.read_table(cli_out).num_rows
    similar = c.predict(7, api_name="/react_more_like_this")
    assert 7 not in [row["id"] for row in similar]  # the row itself is not its own neighbour (issue 19)
    assert [row["rank"] for row in similar] == list(range(5))
    assert len(similar) == 5  # k neighbours: not deduplicated, near-duplicates are what it asks for


def test_bad_input_gives_clear_errors_and_the_app_keeps_serving(served, tmp_path):
    c = client(served)
    index = str(served.user_index)
    cases = [
        (dict(classes=" , \n "), "the class list is empty"),
        (dict(templates="file"), "needs a template file"),
        (dict(template_file=served.root / "broken.txt"), "needs exactly one {}"),
        (dict(templates="nonsense"), "unknown template set"),
        (dict(model=f"local-dir:{DEFAULT_MODEL_DIR}"), "has dimension 128 but index"),
        (dict(k=0), "k must be a whole number"),
    ]
    for options, message in cases:
        if "templates" not in options and "template_file" not in options:
            options["template_file"] = served.root / "exact.txt"
        with pytest.raises(AppError, match=message):
            retrieve(c, index, **options)
    with pytest.raises(AppError, match="not one of the listed indexes"):
        retrieve(c, str(tmp_path), template_file=served.root / "exact.txt")
    with pytest.raises(AppError, match="not a plain file name"):
        c.predict("../escape", api_name="/react_export")
    # A listed index that went missing after start-up: a clear error, not a traceback.
    moved = served.root / "moved"
    shutil.copytree(served.user_index, moved / "gone")
    shutil.rmtree(served.user_index)
    try:
        with pytest.raises(AppError, match="not found|not one of the listed"):
            retrieve(c, index, template_file=served.root / "exact.txt")
    finally:
        shutil.copytree(moved / "gone", served.user_index)
    ok = retrieve(c, index, template_file=served.root / "exact.txt")
    assert {r["id"] for r in ok["classes"]["red square"]["results"][:3]} == expected_ids("red square")
