"""Retrieval algorithms and templates against hand-computed values on small matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from react_explorer.errors import QueryError
from react_explorer.retrieval.algorithms import (
    PromptQuery,
    exact_top_k,
    near_duplicate_keep,
    recall_at_k,
    rerank_exact,
    union_per_class,
)
from react_explorer.retrieval.prompt_templates import (
    builtin_templates,
    expand_prompts,
    load_templates,
    parse_class_names,
    read_class_file,
)

# Four unit vectors in 2-d: q = (1, 0) scores them 1, 0, 0.6, 0.8.
PLANE = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]], dtype=np.float32)
Q = np.array([[1.0, 0.0]], dtype=np.float32)


def test_recall_at_k_hand_computed():
    approx = np.array([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[1, 3, 9], [5, 8, 4]])
    # k=1: {1}&{1} = 1, {4}&{5} = 0 -> 0.5. k=2: {1,2}&{1,3} = 1, {4,5}&{5,8} = 1 -> 0.5. k=3: 2/3 and 2/3.
    assert recall_at_k(approx, exact, 1) == pytest.approx(0.5)
    assert recall_at_k(approx, exact, 2) == pytest.approx(0.5)
    assert recall_at_k(approx, exact, 3) == pytest.approx(2 / 3)
    assert recall_at_k(exact, exact, 3) == 1.0


def test_recall_ignores_padding_and_checks_shapes():
    assert recall_at_k(np.array([[-1, -1]]), np.array([[-1, 7]]), 2) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(np.array([[1, 2]]), np.array([[1, 2]]), 3)


def test_exact_top_k_orders_by_score_then_id():
    scores, ids = exact_top_k(Q, PLANE, 3)
    assert ids.tolist() == [[0, 3, 2]]
    np.testing.assert_allclose(scores, [[1.0, 0.8, 0.6]], atol=1e-6)
    tied = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert exact_top_k(Q, tied, 2)[1].tolist() == [[0, 1]]


def test_rerank_exact_rescores_candidates_and_skips_padding():
    scores, ids = rerank_exact(Q, np.array([[2, 0, -1, 3]]), PLANE, 2)
    assert ids.tolist() == [[0, 3]]
    np.testing.assert_allclose(scores, [[1.0, 0.8]], atol=1e-6)
    scores, ids = rerank_exact(Q, np.array([[-1, 1, -1]]), PLANE, 2)
    assert ids.tolist() == [[1, -1]]
    assert scores[0, 0] == pytest.approx(0.0) and scores[0, 1] == -math.inf


def test_rerank_exact_matches_brute_force_over_many_query_blocks():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((150, 16)).astype(np.float32)  # > one block of 64
    candidates = np.tile(np.arange(300), (150, 1))  # every row is a candidate: re-ranking = exact search
    scores, ids = rerank_exact(queries, candidates, vectors, 5)
    exact_scores, exact_ids = exact_top_k(queries, vectors, 5)
    assert ids.tolist() == exact_ids.tolist()
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)


def test_union_per_class_keeps_every_hit_and_no_cross_class_dedup():
    prompts = [
        PromptQuery("A", "a {}", "a A"),
        PromptQuery("A", "b {}", "b A"),
        PromptQuery("B", "a {}", "a B"),
    ]
    scores = np.array([[0.9, 0.5], [0.8, 0.4], [0.3, -np.inf]], dtype=np.float32)
    ids = np.array([[5, 7], [7, 8], [5, -1]])
    merged = union_per_class(prompts, scores, ids)
    assert list(merged) == ["A", "B"]
    a = merged["A"]
    assert [hit.id for hit in a] == [5, 7, 8]
    assert (a[1].id, a[1].query, a[1].similarity) == (7, "b A", pytest.approx(0.8))
    assert [q for q, _ in a[1].hits] == ["b A", "a A"]  # every prompt that hit row 7, best first
    assert [s for _, s in a[1].hits] == pytest.approx([0.8, 0.5])
    assert a[2].query == "b A" and a[2].similarity == pytest.approx(0.4)
    assert [(hit.id, hit.query) for hit in merged["B"]] == [(5, "a B")]  # row 5 is in both classes


def test_near_duplicate_keep_connected_components_first_kept():
    # v0.v1 = 0.95 and v1.v3 = 0.95 link a chain {0, 1, 3} although v0.v3 = 2 * 0.95^2 - 1 = 0.805 < 0.94.
    angle = math.acos(0.95)
    vectors = np.array(
        [
            [1.0, 0.0, 0.0],
            [math.cos(angle), math.sin(angle), 0.0],
            [0.0, 0.0, 1.0],
            [math.cos(2 * angle), math.sin(2 * angle), 0.0],
        ],
        dtype=np.float32,
    )
    assert float(vectors[0] @ vectors[3]) == pytest.approx(0.805, abs=1e-3)
    assert near_duplicate_keep(vectors, 0.94).tolist() == [True, False, True, False]
    assert near_duplicate_keep(vectors, 0.94, block=1).tolist() == [True, False, True, False]
    assert near_duplicate_keep(vectors, 0.96).tolist() == [True, True, True, True]
    # Ranking decides which member survives: the best-ranked one (row 0 here is v3).
    assert near_duplicate_keep(vectors[[3, 2, 1, 0]], 0.94).tolist() == [True, True, False, False]


def test_near_duplicate_keep_rejects_bad_threshold():
    with pytest.raises(ValueError):
        near_duplicate_keep(PLANE, 1.5)


def test_builtin_template_sets_match_open_clip():
    openai, simple = builtin_templates("openai"), builtin_templates("simple")
    assert len(openai) == 80 and len(simple) == 7
    assert simple[0] == "itap of a {}." and "a photo of a {}." in openai
    assert all(t.count("{}") == 1 for t in openai + simple)
    assert builtin_templates("synthworld") == ("{}", "{} icon", "{} drawing", "{} photo")
    with pytest.raises(QueryError, match="unknown template set"):
        builtin_templates("imagenet")


def test_expand_prompts_is_class_major_product():
    prompts = expand_prompts(["cat", "red fox"], ["a photo of a {}.", "{} icon"])
    assert [p.text for p in prompts] == [
        "a photo of a cat.",
        "cat icon",
        "a photo of a red fox.",
        "red fox icon",
    ]
    assert [p.class_name for p in prompts] == ["cat", "cat", "red fox", "red fox"]
    assert len(expand_prompts(["a", "b", "c"], builtin_templates("openai"))) == 240
    with pytest.raises(QueryError, match="class list is empty"):
        expand_prompts([], ["{}"])


def test_template_file_parsing_and_errors(tmp_path):
    good = tmp_path / "t.txt"
    good.write_text("# my templates\n\na drawing of a {}.\n  {} sticker  \n")
    assert load_templates(good) == ("a drawing of a {}.", "{} sticker")
    cases = {
        "no_slot.txt": ("a photo\n", r"no_slot.txt:1: a template needs exactly one \{\}"),
        "two.txt": ("ok {}\n{} and {}\n", r"two.txt:2: a template needs exactly one"),
        "brace.txt": ("a {} {x}\n", r"brace.txt:1: braces other than"),
        "empty.txt": ("# nothing\n\n", "has no templates"),
        "repeat.txt": ("{} a\n{} a\n", "repeats a template"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(QueryError, match=message):
            load_templates(tmp_path / name)
    with pytest.raises(QueryError, match="template file .*missing.txt not found"):
        load_templates(tmp_path / "missing.txt")


def test_class_names_parsing(tmp_path):
    assert parse_class_names(" vorn, tessel,,vorn\nquorl ") == ("vorn", "tessel", "quorl")
    for empty in ("", " , ,", "\n"):
        with pytest.raises(QueryError, match="class list is empty"):
            parse_class_names(empty)
    classes = tmp_path / "classes.txt"
    classes.write_text("red star\n\nblue circle\n")
    assert read_class_file(classes) == ("red star", "blue circle")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(QueryError, match="is empty"):
        read_class_file(tmp_path / "blank.txt")
