"""The explorer tab's pure parts against hand-computed values: class lists, templates, k, tasks, coverage
statistics (pairs, exclusive pairs, overlap matrix, histogram bins), result views, export names, index
discovery and the cache key of the embedded pool. No Gradio server here (tests/react_explorer/ui/test_react_ui_client.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from react_explorer.errors import IndexLoadError, QueryError
from react_explorer.retrieval.algorithms import ClassHit, PromptQuery
from react_explorer.retrieval.class_queries import ClassRetrieval
from react_explorer.ui.coverage import coverage_stats, histogram_edges, similarity_histogram
from react_explorer.ui.coverage_pictures import histogram_picture, overlap_picture
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.index_sources import (
    EMBEDDED,
    embedded_index_dir,
    embedded_problem,
    index_choices,
    pool_folders,
)
from react_explorer.ui.query_inputs import (
    build_query,
    list_tasks,
    parse_classes,
    parse_k,
    resolve_templates,
    task_classes_text,
)
from react_explorer.ui.results_view import (
    ResultItem,
    detail_markdown,
    displayable_image,
    gallery_caption,
    gallery_label,
    result_items,
    retrieved_ids,
    summary_rows,
)
from react_explorer.ui.subset_export import export_path, write_subset


def test_class_lists_typed_or_pasted():
    assert parse_classes("vorn, tessel,quorl") == ("vorn", "tessel", "quorl")
    assert parse_classes("vorn\ntessel, quorl\n\n vorn \r\n") == ("vorn", "tessel", "quorl")
    for empty in ("", " , \n ,", None):
        with pytest.raises(QueryError, match="the class list is empty"):
            parse_classes(empty)


def test_templates_sets_files_and_their_errors(tmp_path):
    assert resolve_templates("synthworld", None) == (
        ("{}", "{} icon", "{} drawing", "{} photo"),
        "synthworld",
    )
    assert len(resolve_templates("simple", None)[0]) == 7
    assert len(resolve_templates("openai", None)[0]) == 80
    good = tmp_path / "mine.txt"
    good.write_text("# mine\na {} photo\n\n{} drawing\n")
    assert resolve_templates("file", good) == (("a {} photo", "{} drawing"), "mine.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo\n")
    with pytest.raises(QueryError, match=r"bad.txt:1: a template needs exactly one \{\}"):
        resolve_templates("file", bad)
    with pytest.raises(QueryError, match="not found"):
        resolve_templates("file", tmp_path / "gone.txt")
    with pytest.raises(QueryError, match="needs a template file"):
        resolve_templates("file", None)
    with pytest.raises(QueryError, match="unknown template set"):
        resolve_templates("fancy", None)


def test_k_and_the_whole_form():
    assert parse_k(50.0) == 50 and parse_k("7") == 7
    for bad in (0, 201, 2.5, "many", None):
        with pytest.raises(QueryError, match="k must be"):
            parse_k(bad)
    query = build_query("embedded", "a, b", "simple", None, "t2i", 3, False, "  ")
    assert (query.class_names, query.prompt_count, query.model) == (("a", "b"), 14, None)
    assert (query.retrieval.mode, query.retrieval.k, query.retrieval.dedup) == ("t2i", 3, False)
    assert query.retrieval.dedup_threshold == 0.94
    with pytest.raises(QueryError, match="mode must be"):
        build_query("embedded", "a", "simple", None, "i2i", 3, True)
    with pytest.raises(QueryError, match="choose an index"):
        build_query("", "a", "simple", None, "t2t", 3, True)


def test_tasks_fill_the_class_box(tmp_path):
    (tmp_path / "species").mkdir()
    (tmp_path / "species" / "classes.txt").write_text("vorn\ntessel\n\nquorl\n")
    (tmp_path / "colors").mkdir()
    (tmp_path / "colors" / "classes.txt").write_text("red\n")
    (tmp_path / "notes").mkdir()
    assert list_tasks(tmp_path) == ["colors", "species"]
    assert list_tasks(tmp_path / "missing") == []
    assert task_classes_text(tmp_path, "species") == "vorn\ntessel\nquorl"
    for bad in ("notes", "../species", ""):
        with pytest.raises(QueryError):
            task_classes_text(tmp_path, bad)


def test_coverage_counts_by_hand():
    stats = coverage_stats({"a": [1, 2, 3, 3], "b": [2, 3, 4], "c": [5]})
    assert stats.classes == ("a", "b", "c")
    assert stats.pairs == (3, 3, 1)  # the repeated 3 counts once
    assert stats.exclusive == (1, 1, 1)  # a: {1}, b: {4}, c: {5}
    np.testing.assert_array_equal(stats.overlap, [[3, 2, 0], [2, 3, 0], [0, 0, 1]])
    assert stats.total_unique == 5
    empty = coverage_stats({"a": [], "b": [7]})
    assert (empty.pairs, empty.exclusive, empty.total_unique) == ((0, 1), (0, 1), 1)


def test_histogram_bins_by_hand():
    edges, counts = similarity_histogram({"a": [0.1, 0.2, 0.2], "b": [0.9, 1.0]}, edges=np.linspace(0, 1, 5))
    np.testing.assert_allclose(edges, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(counts, [[3, 0, 0, 0], [0, 0, 0, 2]])  # 1.0 falls in the closed last bin
    edges, counts = similarity_histogram(
        {"a": [0.2, 0.6], "b": [0.35, 0.45]}, bins=2
    )  # edges from the values
    np.testing.assert_allclose(edges, [0.2, 0.4, 0.6])
    np.testing.assert_array_equal(counts, [[1, 1], [1, 1]])
    np.testing.assert_allclose(histogram_edges([0.5, 0.5], bins=2), [0.495, 0.5, 0.505])
    np.testing.assert_allclose(histogram_edges([], bins=2), [0.0, 0.5, 1.0])


def test_pictures_have_one_cell_per_class_pair_and_one_bar_per_bin():
    stats = coverage_stats({"a": [1, 2], "b": [2, 3], "c": [9]})
    image = overlap_picture(stats.classes, stats.overlap, cell=20)
    assert image.size[0] == image.size[1] and image.size[0] >= 3 * 20
    bars = histogram_picture(np.linspace(0, 1, 5), np.array([[1, 0, 0, 3]]), width=400, height=200)
    assert bars.size == (400, 200)
    pixels = np.all(np.asarray(bars) == (70, 110, 200), axis=2)  # bar colour; plot spans x 44..388, y 24..166
    bins = [slice(46, 128), slice(132, 214), slice(218, 300), slice(304, 386)]  # 86 px per bin
    assert [bool(pixels[150, b].all()) for b in bins] == [True, False, False, True]  # low: bins 0 and 3
    assert [bool(pixels[100, b].any()) for b in bins] == [False, False, False, True]  # above 1/3: bin 3 only


def toy_retrieval() -> ClassRetrieval:
    prompt = PromptQuery("a", "{}", "a")
    hits = {
        "a": [
            ClassHit(4, 0.9, "a", (("a", 0.9), ("a photo", 0.8))),
            ClassHit(2, 0.5, "a photo", (("a photo", 0.5),)),
        ],
        "b": [ClassHit(2, 0.7, "b", (("b", 0.7),))],
    }
    return ClassRetrieval((prompt,), hits, {"a": 1, "b": 0})


def test_result_views(tmp_path):
    retrieval = toy_retrieval()
    assert retrieved_ids(retrieval) == [4, 2]
    image = tmp_path / "pool" / "4.png"
    image.parent.mkdir()
    image.write_bytes(b"png")
    rows = {
        4: {"key": "k4", "caption": "a | b " + "x" * 100, "image_path": str(image)},
        2: {"key": "k2", "caption": "c"},
    }
    items = result_items(retrieval, rows)
    assert [(i.class_name, i.rank, i.id) for i in items["a"]] == [("a", 0, 4), ("a", 1, 2)]
    first = items["a"][0]
    assert gallery_caption(first).startswith("0.900 · a | b x") and gallery_caption(first).endswith("…")
    assert len(gallery_caption(first)) == len("0.900 · ") + 70
    assert displayable_image(first, [tmp_path / "pool"]) == str(image.resolve())
    assert displayable_image(first, [tmp_path / "elsewhere"]) is None  # not served: placeholder
    assert displayable_image(items["a"][1], [tmp_path]) is None  # no image_path
    detail = detail_markdown(first)
    for text in ("### a #1: pool row 4", "a \\| b", "| similarity | 0.9000 |", "| key | k4 |",
                 "Queries that hit it (2)", "- 0.8000 · a photo"):  # fmt: skip
        assert text in detail
    stats = coverage_stats({n: [h.id for h in hs] for n, hs in retrieval.per_class.items()})
    assert summary_rows(retrieval, stats) == [["a", 2, 1, 1, 0.9, 0.7, "a"], ["b", 1, 0, 0, 0.7, 0.7, "b"]]
    assert gallery_label("a", 48, 120, 3) == "a: 120 pairs, best 48 shown, 3 near-duplicates removed"
    assert gallery_label("b", 5, 5, 0) == "b: 5 pairs"
    assert isinstance(first, ResultItem)


def test_export_names_are_confined(tmp_path):
    assert export_path(tmp_path, "species_subset") == tmp_path / "species_subset.parquet"
    assert export_path(tmp_path, " a-1.v2.parquet ") == tmp_path / "a-1.v2.parquet"
    for bad in ("../x", "a/b", ".hidden", "a..b", "", "   ", "x" * 101, "sp ace", "/etc/passwd"):
        with pytest.raises(QueryError):
            export_path(tmp_path, bad)
    table = pa.table({"caption": ["x"], "class": ["a"]})
    written = write_subset(table, export_path(tmp_path / "exports", "one"))
    assert pq.read_table(written).equals(table)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["one.parquet"]  # no temp file left
    with pytest.raises(QueryError, match="the subset is empty"):
        write_subset(table.slice(0, 0), tmp_path / "exports" / "empty.parquet")


def fake_index(directory, count: int, dim: int, pool: str | None = None) -> None:
    directory.mkdir(parents=True)
    source = {"pool": pool} if pool else {}
    (directory / "manifest.json").write_text(json.dumps({"count": count, "dim": dim, "source": source}))


def test_index_discovery_and_the_missing_world(tmp_path):
    cfg = ExplorerConfig.tiny(tmp_path, user_indexes=(tmp_path / "mine",))
    fake_index(tmp_path / "mine", 10, 16, pool=str(tmp_path / "pools" / "mine.parquet"))
    fake_index(cfg.runs_root / "b", 30000, 128)
    fake_index(cfg.runs_root / "a", 5, 8)
    (cfg.runs_root / "not-an-index").mkdir()
    choices = index_choices(cfg)
    assert [c.value for c in choices] == [EMBEDDED, str(tmp_path / "mine"), str(cfg.runs_root / "a"),
                                          str(cfg.runs_root / "b")]  # fmt: skip
    assert [c.label for c in choices[1:]] == [
        "mine (10 pairs, 16-d)",
        "a (5 pairs, 8-d)",
        "b (30,000 pairs, 128-d)",
    ]
    assert choices[0].label.endswith("not available")
    assert str(tmp_path / "pools") in pool_folders(cfg)
    problem = embedded_problem(cfg)
    assert "not generated yet" in problem and "python -m trainer.synthworld generate --out" in problem
    services = ExplorerServices(cfg)
    with pytest.raises(IndexLoadError, match="not generated yet"):
        services.open_index(EMBEDDED)
    with pytest.raises(IndexLoadError, match="not one of the listed indexes"):
        services.index_dir(str(tmp_path))  # a page cannot open arbitrary folders


def test_the_launchers_index_build_jobs_are_listed_by_job_id(tmp_path):
    ws = tmp_path / "ws"
    cfg = ExplorerConfig.tiny(tmp_path, job_workspace=ws)
    fake_index(
        ws / "jobs" / "j2-index-build" / "run" / "index", 600, 128, pool=str(tmp_path / "pool" / "p.parquet")
    )
    fake_index(ws / "jobs" / "j1-index-build" / "run" / "index", 24, 32)
    (ws / "jobs" / "j3-index-build" / "run" / "index").mkdir(parents=True)  # still building: no manifest yet
    fake_index(cfg.runs_root / "a", 5, 8)
    choices = index_choices(cfg)
    assert [c.label for c in choices[1:]] == [
        "a (5 pairs, 8-d)",
        "job j1-index-build (24 pairs, 32-d)",
        "job j2-index-build (600 pairs, 128-d)",
    ]
    assert choices[3].directory == ws / "jobs" / "j2-index-build" / "run" / "index"
    assert str(tmp_path / "pool") in pool_folders(cfg)  # its pool's images can be shown
    assert [c.label for c in index_choices(ExplorerConfig.tiny(tmp_path))[1:]] == ["a (5 pairs, 8-d)"]


def test_the_embedded_cache_folder_is_keyed_by_the_clip_weights(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "open_clip_model.safetensors").write_bytes(b"weights-1")
    cfg = ExplorerConfig.tiny(tmp_path, clip_dir=clip)
    first = embedded_index_dir(cfg)
    assert first.parent == cfg.cache_root and first.name.startswith("world-nomanifest-clip-")
    (clip / "open_clip_model.safetensors").write_bytes(b"weights-2")
    assert embedded_index_dir(cfg) != first


def test_config_refuses_contradictions(tmp_path):
    with pytest.raises(ValueError, match="max_galleries"):
        ExplorerConfig.tiny(tmp_path, max_galleries=0)
    with pytest.raises(ValueError, match="inside the index cache"):
        ExplorerConfig.tiny(tmp_path, export_dir=tmp_path / "cache" / "exports")
    with pytest.raises(ValueError, match="inside the export folder"):
        ExplorerConfig.tiny(tmp_path, user_indexes=(tmp_path / "runs" / "react" / "exports" / "x",))
