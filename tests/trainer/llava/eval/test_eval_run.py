"""The eval runner and CLI: metric plumbing exact with fake answerers, config validation, and a smoke run of a
tiny random LLaVA-NeXT through the local chat backend."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from trainer import eval as eval_cli
from trainer.llava.eval.data import EvalItem, load_eval_sets, open_eval_image, select_items
from trainer.llava.eval.run import (
    AnswerError,
    BackendAnswerer,
    EvalConfig,
    Question,
    answer_questions,
    run_eval,
)


def _digest(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


class OracleAnswerer:
    """Knows every reference answer (keyed by image pixels + prompt) and spoils the ones it is told to.

    Spoiled short answers become "purple pentagon", spoiled yes/no answers are flipped, spoiled letters
    move to the next option. Correct answers are phrased the way a model might ("Yes.", "The answer is B",
    "Top-left") so the parsing rules are part of what is checked.
    """

    def __init__(self, world: Path, items: list[EvalItem], spoil: set[tuple[str, int]]) -> None:
        self.truth: dict[tuple[str, str], tuple[EvalItem, bool]] = {}
        for item in items:
            key = (_digest(open_eval_image(world, item.image, item.where)), item.text)
            self.truth[key] = (item, (item.set_name, item.question_id) in spoil)
        self.calls: list[int] = []

    def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
        self.calls.append(max_new_tokens)
        if (_digest(image), prompt) not in self.truth:
            return "a red circle at the top left and a blue square below it, " * 2  # a description probe
        item, spoiled = self.truth[(_digest(image), prompt)]
        if item.set_name == "pope":
            said = item.answer if not spoiled else {"yes": "no", "no": "yes"}[item.answer]
            return f"{said.capitalize()}."
        if item.set_name == "mc":
            letters = "ABCDEFGH"[: len(item.options)]
            letter = letters[(letters.index(item.answer) + spoiled) % len(letters)]
            return f"The answer is {letter}"
        return "purple pentagon" if spoiled else item.answer.replace(" ", "-").title()


def test_oracle_scores_exactly_one_and_spoiled_answers_lower_each_metric_exactly(tiny_world: Path) -> None:
    config = EvalConfig(limit=12, description_images=2)
    chosen = {name: select_items(items, 12) for name, items in load_eval_sets(tiny_world).items()}
    every = [item for items in chosen.values() for item in items]
    perfect = run_eval(OracleAnswerer(tiny_world, every, set()), tiny_world, config, progress=False).report
    for key in ("short_answer_accuracy", "yes_no_f1", "multiple_choice_accuracy", "small_detail_accuracy"):
        assert perfect[key] == 1.0, key
    # The tiny world has fewer than 12 detail questions: all of them are asked.
    assert perfect["counts"] == {
        "vqa": 12,
        "pope": 12,
        "mc": 12,
        "detail": len(chosen["detail"]),
        "description": 2,
    }
    assert 0 < len(chosen["detail"]) < 12
    assert perfect["sets"]["pope"]["pooled"]["yes_ratio"] == 0.5  # the limit keeps pope balanced
    assert perfect["description_mean_words"] == 26.0  # 13 words, twice

    # Spoil: vqa items 0 and 1 of the subset, one pope "no" probe (a false positive), mc item 0.
    # POPE asks the same positive question in all three categories, so spoil a negative probe whose
    # (image, prompt) is unique in the subset: the oracle, like a model, cannot tell duplicates apart.
    keys = Counter((item.image, item.text) for item in chosen["pope"])
    pope_no = next(i for i in chosen["pope"] if i.answer == "no" and keys[(i.image, i.text)] == 1)
    spoil = {("vqa", chosen["vqa"][0].question_id), ("vqa", chosen["vqa"][1].question_id)}
    spoil |= {("pope", pope_no.question_id), ("mc", chosen["mc"][0].question_id)}
    oracle = OracleAnswerer(tiny_world, every, spoil)
    result = run_eval(oracle, tiny_world, config, progress=False)
    report = result.report
    assert report["short_answer_accuracy"] == pytest.approx(10 / 12)
    assert report["multiple_choice_accuracy"] == pytest.approx(11 / 12)
    assert report["small_detail_accuracy"] == 1.0
    # The spoiled probe's category now has TP=2, FP=1, TN=1 (4 probes, 2 per answer): P=2/3, R=1, F1=4/5.
    pope = report["sets"]["pope"]
    assert pope["by_category"][pope_no.category]["f1"] == pytest.approx(4 / 5)
    assert report["yes_no_f1"] == pytest.approx((1 + 1 + 4 / 5) / 3)
    assert pope["pooled"]["yes_ratio"] == pytest.approx(7 / 12)
    spoiled_category = chosen["vqa"][0].category
    by_category = report["sets"]["vqa"]["by_category"]
    assert sum(c["n"] - c["correct"] for c in by_category.values()) == 2
    assert by_category[spoiled_category]["correct"] < by_category[spoiled_category]["n"]
    # Short questions get the short token cap, the two description probes the long one.
    short = 36 + len(chosen["detail"])  # vqa, pope, mc (12 each) and every detail question of the tiny world
    assert oracle.calls.count(config.short_max_new_tokens) == short
    assert oracle.calls.count(config.description_max_new_tokens) == 2
    # One prediction record per question, with its correctness.
    assert len(result.predictions) == short
    wrong = {(p["set"], p["question_id"]) for p in result.predictions if not p["correct"]}
    assert wrong == spoil
    # Every answer is <= 3 words except the 12 "The answer is X" letters (4 words).
    assert report["answers_at_most_3_words"] == pytest.approx((short - 12) / short)
    assert report["config"]["limit"] == 12 and report["split"] == "test"


def test_a_missing_set_gives_null_headlines(tiny_world: Path) -> None:
    class AlwaysYes:
        def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
            return "yes"

    report = run_eval(
        AlwaysYes(), tiny_world, EvalConfig(sets=("pope",), limit=6, description_images=0), progress=False
    ).report
    assert report["short_answer_accuracy"] is None and report["multiple_choice_accuracy"] is None
    # Always "yes" on a balanced set: precision 1/2, recall 1, F1 2/3 in every category, yes-ratio 1.
    assert report["yes_no_f1"] == pytest.approx(2 / 3)
    assert report["sets"]["pope"]["pooled"]["yes_ratio"] == 1.0
    assert report["description_mean_words"] is None and report["counts"]["description"] == 0


def test_batch_answerers_are_called_in_chunks() -> None:
    class Batcher:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
            raise AssertionError("the runner must use answer_batch")

        def answer_batch(self, questions: list[Question]) -> list[str]:
            self.sizes.append(len(questions))
            return [question.prompt.upper() for question in questions]

    image = Image.new("RGB", (8, 8))
    questions = [Question(image, f"q{i}", 4) for i in range(7)]
    batcher = Batcher()
    assert answer_questions(batcher, questions, batch_size=3, progress=False) == [f"Q{i}" for i in range(7)]
    assert batcher.sizes == [3, 3, 1]


def test_batch_answerers_answer_a_repeated_question_once_and_in_size_order() -> None:
    class Batcher:
        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
            raise AssertionError("the runner must use answer_batch")

        def answer_batch(self, questions: list[Question]) -> list[str]:
            self.asked.append([f"{q.prompt}@{q.image.size[0]}" for q in questions])
            return [f"{q.prompt}@{q.image.size[0]}" for q in questions]

    big, small = Image.new("RGB", (20, 20)), Image.new("RGB", (8, 8))
    same_pixels_other_object = Image.new("RGB", (8, 8))
    questions = [
        Question(big, "a", 4),
        Question(small, "a", 4),
        Question(same_pixels_other_object, "a", 4),  # the same question again: answered once
        Question(small, "a", 9),  # another token cap is another question
        Question(big, "b", 4),
    ]
    batcher = Batcher()
    answers = answer_questions(batcher, questions, batch_size=2, progress=False)
    assert answers == ["a@20", "a@8", "a@8", "a@8", "b@20"]
    assert batcher.asked == [["a@8", "a@8"], ["a@20", "b@20"]]  # small images first, then the big ones


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sets": ()}, "at least one"),
        ({"sets": ("vqa", "vqa")}, "distinct"),
        ({"sets": ("gqa",)}, "distinct names"),
        ({"limit": 0}, "positive integer"),
        ({"split": "val"}, "split"),
        ({"short_max_new_tokens": 0}, "at least 1"),
        ({"description_images": 2, "description_max_new_tokens": 8}, "cannot hold a detailed description"),
        (
            {"description_prompt": "Describe it.\nAnswer the question using a single word or phrase."},
            "short one",
        ),
    ],
)
def test_contradictory_or_bad_configs_raise(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvalConfig(**overrides)
    assert EvalConfig(description_images=0, description_max_new_tokens=8).description_images == 0


def test_presets() -> None:
    assert EvalConfig.tiny().limit == 4
    assert EvalConfig.quick().limit == 300 and EvalConfig.quick().image_use_records == 64
    assert EvalConfig.quick(limit=4).image_use_records == 4
    assert EvalConfig.quick(limit=4, image_use_records=10).image_use_records == 10
    assert EvalConfig.full().limit is None


def test_cli_prints_the_json_report_and_writes_outputs(
    tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    every = [item for items in load_eval_sets(tiny_world).values() for item in items]
    monkeypatch.setattr(eval_cli, "resolve_checkpoint", lambda model: ("oracle", "/models/oracle"))
    monkeypatch.setattr(eval_cli, "make_answerer", lambda model: OracleAnswerer(tiny_world, every, set()))
    out, predictions = tmp_path / "r" / "report.json", tmp_path / "p.jsonl"
    argv = ["llava", "--world", str(tiny_world), "--limit", "5", "--descriptions", "1", "--no-progress"]
    assert eval_cli.main([*argv, "--json", "--out", str(out), "--predictions", str(predictions)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert report["model"] == "oracle" and report["model_path"] == "/models/oracle"
    assert report["short_answer_accuracy"] == report["yes_no_f1"] == 1.0
    assert report["counts"] == {"vqa": 5, "pope": 5, "mc": 5, "detail": 5, "description": 1}
    assert set(report["sets"]["vqa"]["by_category"]) == {"color", "count", "position", "shape", "text"}
    assert report["seconds"] >= report["eval_seconds"] >= 0
    assert len(predictions.read_text().splitlines()) == 20

    assert eval_cli.main([*argv, "--sets", "vqa,mc"]) == 0
    table = capsys.readouterr().out
    assert "short_answer_accuracy        1.000" in table and "yes_no_f1                    -" in table


def test_cli_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_cli.main(["llava", "--model", str(tmp_path / "nope"), "--world", str(tmp_path)]) == 2
    assert "looks like a path but is not an existing directory" in capsys.readouterr().err
    assert eval_cli.main(["llava", "--model", str(tmp_path), "--world", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --world") and err.rstrip().endswith("does not exist")
    assert (
        eval_cli.main(["llava", "--model", str(tmp_path), "--descriptions", "2", "--max-new-tokens", "0"])
        == 2
    )
    assert "bad options" in capsys.readouterr().err


def test_missing_embedded_model_says_how_to_build_it() -> None:
    from llava_demo.presets import resolve_model

    if Path(resolve_model(eval_cli.DEFAULT_MODEL_PRESET).checkpoint).is_dir():
        pytest.skip("the embedded model is built")
    with pytest.raises(eval_cli.EvalCliError, match="not built yet.*trainer.recipe"):
        eval_cli.resolve_checkpoint(eval_cli.DEFAULT_MODEL_PRESET)


def test_tiny_llava_through_the_local_backend(tiny_world: Path, tiny_llava_dir: Path) -> None:
    pytest.importorskip("llava_demo.backends.local")
    from llava_demo.backends import make_backend

    model_dir = tiny_llava_dir
    with make_backend("local", str(model_dir), device="cpu") as backend:
        config = EvalConfig.tiny(limit=2)
        result = run_eval(BackendAnswerer(backend), tiny_world, config, progress=False)
    report = result.report
    assert report["counts"] == {"vqa": 2, "pope": 2, "mc": 2, "detail": 2, "description": 1}
    for key in ("short_answer_accuracy", "yes_no_f1", "multiple_choice_accuracy", "small_detail_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    # Greedy decoding is deterministic: a second run gives the same answers.
    with make_backend("local", str(model_dir), device="cpu") as backend:
        again = run_eval(BackendAnswerer(backend), tiny_world, config, progress=False)
    assert [p["prediction"] for p in again.predictions] == [p["prediction"] for p in result.predictions]
    assert report["answer_length"]["description"]["max_words"] <= config.description_max_new_tokens


def test_default_world_is_generated_once_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "cache" / "tiny-seed0"
    # trainer.eval imports world_cache_dir by name, so the name in its namespace is the one to replace.
    monkeypatch.setattr(eval_cli, "world_cache_dir", lambda preset, seed: target)
    monkeypatch.setattr(eval_cli, "DEFAULT_WORLD_PRESET", "tiny")
    assert eval_cli.default_world() == target
    assert "is missing; generating it" in capsys.readouterr().err
    assert len(load_eval_sets(target)["vqa"]) > 0
    stamp = (target / "manifest.json").stat().st_mtime_ns
    assert eval_cli.default_world() == target  # present now: reused, not regenerated
    assert (target / "manifest.json").stat().st_mtime_ns == stamp
    assert capsys.readouterr().err == ""


def test_a_backend_failure_names_the_question(tiny_world: Path) -> None:
    from llava_demo.backends import BackendBase, ContextOverflowError

    class Overflowing(BackendBase):
        def stream(self, conversation, params=None, cancel=None):  # type: ignore[no-untyped-def]
            raise ContextOverflowError(
                "prompt too long", prompt_tokens=900, max_new_tokens=16, context_length=512
            )

    config = EvalConfig(sets=("mc",), limit=3, description_images=0)
    with pytest.raises(AnswerError, match=r"^mc question \d+: ContextOverflowError: prompt too long$"):
        run_eval(BackendAnswerer(Overflowing()), tiny_world, config, progress=False)  # type: ignore[arg-type]


def test_the_default_world_is_the_one_the_model_was_trained_on(tmp_path: Path) -> None:
    """The LLaVA recipe's manifest names the world preset and seed; other models get the default world."""
    model = tmp_path / "model"
    model.mkdir()
    assert eval_cli.model_world(str(model)) == (None, None)  # no manifest: a real checkpoint
    manifest = {"recipe": {"config": {"world_preset": "simple", "seed": 3}}}
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert eval_cli.model_world(str(model)) == ("simple", 3)
    manifest["recipe"]["config"]["world_preset"] = "../../etc"  # not a preset: ignored, not a path
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert eval_cli.model_world(str(model)) == (None, None)
    (model / "manifest.json").write_text("{not json")
    assert eval_cli.model_world(str(model)) == (None, None)
