"""Issue 19, defect 1: the coverage pictures never fail on what a retrieval can produce (property tests over
arbitrary counts and matrices), and a picture that does fail shows its own error while the galleries, the
table and the stored result (which the export reads) of the same retrieval are shown."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from react_explorer.retrieval.algorithms import ClassHit, PromptQuery
from react_explorer.retrieval.class_queries import ClassRetrieval, RetrievalConfig
from react_explorer.ui import explorer_handlers
from react_explorer.ui.coverage import coverage_stats, similarity_histogram
from react_explorer.ui.coverage_pictures import BAR, bar_boxes, histogram_picture, overlap_picture
from react_explorer.ui.explorer_actions import ExplorerResult
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.explorer_handlers import ExplorerHandlers, placeholder_image
from react_explorer.ui.explorer_services import ExplorerServices
from react_explorer.ui.query_inputs import ExplorerQuery
from react_explorer.ui.results_view import result_items
from react_explorer.ui.safe_pictures import ERROR_BACKGROUND, error_picture, picture_or_error

PICTURES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COUNTS = st.integers(min_value=0, max_value=10**9)


def test_a_bin_under_one_pixel_of_the_peak_is_drawn_not_refused():
    """The reported crash: 'shapes' put 1 pair in a bin next to one with 200 (1/200 < 1/182 of the plot)."""
    edges = np.linspace(0.1, 0.4, 5)
    image = histogram_picture(edges, np.array([[200, 1, 0, 7]]))
    assert image.size == (520, 256)
    pixels = np.asarray(image)
    bar_rgb = np.array(BAR)
    for x0, x1, _ in bar_boxes(np.array([200, 1, 0, 7]), 200, 44, 508, 40, 222):
        assert (pixels[221, x0 : x1 + 1] == bar_rgb).all(1).any()  # the lowest row of every non-empty bin


@PICTURES
@given(
    totals=st.lists(COUNTS, min_size=1, max_size=700),
    classes=st.integers(min_value=1, max_value=3),
    low=st.floats(-1, 1),
    width=st.floats(0, 2),
)
def test_histogram_picture_draws_every_non_empty_bin(totals, classes, low, width):
    counts = np.zeros((classes, len(totals)), dtype=np.int64)
    counts[0] = totals  # the other classes' rows stay empty
    edges = np.linspace(low, low + width, len(totals) + 1)
    image = histogram_picture(edges, counts)
    assert image.size == (520, 256)
    peak = max(max(totals), 1)
    pixels = np.asarray(image)
    for x0, x1, top in bar_boxes(np.array(totals), peak, 44, 508, 40, 222):
        assert 44 < x0 <= x1 <= 508 and 40 <= top <= 221
        assert (pixels[221, x0 : x1 + 1] == np.array(BAR)).all(1).any()
    assert len(bar_boxes(np.array(totals), peak, 44, 508, 40, 222)) == sum(1 for t in totals if t)


@PICTURES
@given(similarities=st.dictionaries(st.text(min_size=1, max_size=20),
                                    st.lists(st.floats(-1, 1), max_size=60), max_size=6))  # fmt: skip
def test_histogram_picture_over_what_similarity_histogram_returns(similarities):
    edges, counts = similarity_histogram(similarities)
    assert histogram_picture(edges, counts).size == (520, 256)


@PICTURES
@given(ids=st.dictionaries(st.text(min_size=1, max_size=30),
                           st.lists(st.integers(0, 40), max_size=30), max_size=12))  # fmt: skip
def test_overlap_picture_over_what_coverage_stats_returns(ids):
    stats = coverage_stats(ids)
    image = overlap_picture(stats.classes, stats.overlap)
    count = len(stats.classes)
    assert image.size[0] == image.size[1] >= count * 28


@PICTURES
@given(matrix=st.integers(0, 9).flatmap(
    lambda n: arrays(np.int64, (n, n), elements=st.integers(0, 10**12))))  # fmt: skip
def test_overlap_picture_over_arbitrary_count_matrices(matrix):
    names = [f"class {i}" for i in range(matrix.shape[0])]
    image = overlap_picture(names, matrix)
    assert image.mode == "RGB" and image.size[0] >= matrix.shape[0] * 28


def test_pictures_refuse_inconsistent_input_with_a_clear_message():
    with pytest.raises(ValueError, match=r"overlap matrix is \(2, 3\), expected \(2, 2\)"):
        overlap_picture(["a", "b"], np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="not negative"):
        histogram_picture(np.linspace(0, 1, 3), np.array([1, -1]))
    with pytest.raises(ValueError, match="at least 2 bin edges"):
        histogram_picture(np.array([0.5]), np.array([1]))


@PICTURES
@given(size=st.integers(8, 300))
def test_placeholder_and_error_pictures_at_any_size(size):
    assert placeholder_image(size).size == (size, size)
    assert error_picture("x", "y" * size, width=size + 100, height=size).size == (size + 100, size)


def test_a_failing_picture_shows_its_own_error():
    def broken() -> Image.Image:
        raise ValueError("y1 must be greater than or equal to y0")

    image = picture_or_error("similarity histogram", broken)
    assert image.getpixel((2, 2)) == ERROR_BACKGROUND
    assert picture_or_error("fine", lambda: Image.new("RGB", (3, 3))).size == (3, 3)


def _result() -> ExplorerResult:
    prompt = PromptQuery("a", "{}", "a")
    hits = {"a": [ClassHit(1, 0.9, "a", (("a", 0.9),)), ClassHit(2, 0.5, "a", (("a", 0.5),))]}
    retrieval = ClassRetrieval((prompt,), hits, {"a": 0})
    rows = {1: {"caption": "one"}, 2: {"caption": "two"}}
    stats = coverage_stats({"a": [1, 2]})
    edges, counts = similarity_histogram({"a": [0.9, 0.5]})
    query = ExplorerQuery("idx", ("a",), ("{}",), "file", RetrievalConfig(mode="t2t", k=2), None)
    return ExplorerResult(query, retrieval, result_items(retrieval, rows), stats, edges, counts, 2, 0.01)


def test_retrieve_keeps_galleries_table_and_result_when_a_picture_fails(tmp_path, monkeypatch):
    services = ExplorerServices(ExplorerConfig.tiny(tmp_path))
    result = _result()
    monkeypatch.setattr(explorer_handlers, "run_retrieval", lambda *a, **k: result)

    def broken(*args, **kwargs):
        raise ValueError("y1 must be greater than or equal to y0")

    monkeypatch.setattr(explorer_handlers, "histogram_picture", broken)
    handlers = ExplorerHandlers(services)
    out = handlers.retrieve(
        "idx", "a", "synthworld", None, "t2t", 2, False, "", progress=lambda *a, **k: None
    )
    slots = services.cfg.max_galleries
    first_gallery, table, overlap, histogram, status = out[0], out[slots], *out[slots + 1 : slots + 4]
    assert first_gallery.visible and len(first_gallery.value) == 2
    assert table.value["data"][0][:2] == ["a", 2]
    assert isinstance(overlap, Image.Image) and overlap.getpixel((2, 2)) != ERROR_BACKGROUND
    assert histogram.getpixel((2, 2)) == ERROR_BACKGROUND  # the failure, in its own place
    assert "distinct pairs" in status and "Error" not in status
    assert out[-3] is result  # the stored result: "More like this" and Export work from it


def test_retrieve_right_after_picking_a_task_uses_its_classes(tmp_path, monkeypatch):
    """The spurious "class list is empty": Retrieve sent before the task had filled the class box."""
    services = ExplorerServices(ExplorerConfig.tiny(tmp_path))
    task_dir = services.cfg.tasks_dir / "shapes"
    task_dir.mkdir(parents=True)
    (task_dir / "classes.txt").write_text("star\ncircle\n")
    asked = []

    def fake_run(services, query, notice=None):
        asked.append(query.class_names)
        return _result()

    warnings = []
    monkeypatch.setattr(explorer_handlers, "run_retrieval", fake_run)
    monkeypatch.setattr(explorer_handlers.gr, "Warning", warnings.append)
    out = ExplorerHandlers(services).retrieve("idx", "", "synthworld", None, "t2t", 2, False, "", "shapes",
                                              progress=lambda *a, **k: None)  # fmt: skip
    assert asked == [("star", "circle")] and warnings == []
    assert "distinct pairs" in out[services.cfg.max_galleries + 3]
    ExplorerHandlers(services).retrieve("idx", "  ", "synthworld", None, "t2t", 2, False, "", "",
                                        progress=lambda *a, **k: None)  # fmt: skip
    assert warnings == ["the class list is empty: give at least one class name"]  # no task: still refused
