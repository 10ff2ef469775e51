"""The ideal-token lookup probe: question sampling, the no-lookup shortcut by hand, the ideal token, the scoring
alignment on a fake LM whose answers are known, and a tiny Llama that learns the one-object case."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

from trainer.foundation.corpus import render_vicuna_v1
from trainer.foundation.tokenizer import train_tokenizer
from trainer.probes.lookup_probe import (
    LookupBatcher,
    LookupObject,
    LookupProbeConfig,
    LookupQuestion,
    grid_tokens,
    main,
    object_vector,
    random_object_colour_rate,
    run_lookup_probe,
    sample_question,
    scene_objects,
    score,
)
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES
from trainer.synthworld.scene_view import SceneObject, SceneView
from vision_common.chat.format_prompts import SHORT_ANSWER


@pytest.fixture(scope="module")
def tok():
    corpus = [
        f"Is there a {s} in the image? What color is the {s}? {c} yes no" for s in SHAPES for c in COLOR_NAMES
    ]
    # the vicuna_v1 frame around the objects, so that it tokenizes into words rather than characters
    corpus.append(
        render_vicuna_v1([{"from": "human", "value": f"<image>\nWhat?\n{SHORT_ANSWER}"}], where="-")
    )
    return train_tokenizer(corpus * 2, vocab_size=1000)


def test_scene_objects_keeps_coloured_shapes_and_drops_empty_scenes() -> None:
    views = [
        SceneView(
            10, 10, (SceneObject("star", (0, 0, 1, 1), color="red"), SceneObject("sign", (0, 0, 1, 1)))
        ),
        SceneView(10, 10, (SceneObject("sign", (0, 0, 1, 1), text="2Y8"),)),
    ]
    assert scene_objects(views) == [(LookupObject("star", "red", (0.0, 0.0, 0.1, 0.1)),)]


def test_sampled_questions_are_answered_by_the_scene() -> None:
    rng = random.Random(0)
    scene = (LookupObject("star", "red"), LookupObject("star", "blue"), LookupObject("ring", "green"))
    kinds = {"color": 0, "yes": 0, "no": 0}
    for _ in range(600):
        q = sample_question(scene, rng)
        kinds[q.kind] += 1
        shape = re.search(r"(?:the|a) (\w+)", q.question.replace("the image", "")).group(1)
        if q.kind == "color":  # only the shape present once can be asked, and its colour is the answer
            assert (shape, q.answer) == ("ring", "green")
        else:
            assert (shape in {"star", "ring"}) == (q.answer == "yes") and q.answer == q.kind
    assert all(120 < n < 330 for n in kinds.values()), kinds


def test_random_object_colour_rate_by_hand() -> None:
    scene = (LookupObject("star", "red"), LookupObject("circle", "red"), LookupObject("ring", "blue"))
    questions = [
        LookupQuestion(scene, "What color is the ring?", "blue", "color"),  # 1 of 3 objects is blue
        LookupQuestion(scene, "What color is the star?", "red", "color"),  # 2 of 3 are red
        LookupQuestion(scene, "Is there a ring in the image?", "yes", "yes"),  # not a colour question
    ]
    assert random_object_colour_rate(questions) == 0.5


def test_object_vector_is_the_scaled_sum_of_word_embeddings() -> None:
    embedding = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 4.0]])
    vector = object_vector(embedding, {"star": [0, 1], "red": [2]}, ("star", "red"), norm=10.0)
    # star = mean of rows 0, 1 = (2, 0); red = (0, 4); sum (2, 4) scaled to norm 10
    expected = torch.tensor([2.0, 4.0]) / (20**0.5) * 10
    assert torch.allclose(vector, expected)


class _SaysYes(torch.nn.Module):
    """Fake LM: whatever the input, the next token is always ``token``."""

    def __init__(self, embedding: torch.nn.Embedding, token: int) -> None:
        super().__init__()
        self.embedding, self.token = embedding, token

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embedding

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> object:
        logits = torch.zeros(*inputs_embeds.shape[:2], self.embedding.num_embeddings)
        logits[..., self.token] = 1.0
        return type("Out", (), {"logits": logits})()


def test_score_reads_the_answer_tokens_after_the_objects(tok) -> None:
    yes = tok(" yes", add_special_tokens=False)["input_ids"]
    assert len(yes) == 1
    model = _SaysYes(torch.nn.Embedding(len(tok), 8), yes[0])
    batcher = LookupBatcher(model, tok)
    scene = (LookupObject("star", "red"), LookupObject("ring", "blue"))
    questions = [
        LookupQuestion(scene, "Is there a star in the image?", "yes", "yes"),
        LookupQuestion(scene, "Is there a cross in the image?", "no", "no"),
        LookupQuestion(scene, "What color is the star?", "red", "color"),
    ]
    embeds, labels, mask, spans = batcher.batch(questions, random.Random(0))
    before, after, answer = batcher.tokens(questions[0])
    assert spans[0] == (len(before) + 2 + len(after), len(before) + 2 + len(after) + len(answer))
    assert labels[0, spans[0][0] : spans[0][1]].tolist() == answer
    assert labels[0, spans[0][1]].item() == tok.eos_token_id and (labels[0, : spans[0][0]] == -100).all()
    assert score(model, batcher, questions, seed=0) == {"color": 0.0, "yes": 1.0, "no": 0.0}


def test_grid_tokens_paint_boxes_and_centres_by_hand() -> None:
    vectors = torch.tensor([[1.0], [2.0]])
    # 4 x 4 grid, cell centres at 0.125, 0.375, 0.625, 0.875. Object 1 covers the left half; object 2 is a
    # small box inside cell (3, 3) whose centre no cell centre falls in, drawn over nothing.
    boxes = [(0.0, 0.0, 0.5, 1.0), (0.76, 0.76, 0.05, 0.05)]
    grid = grid_tokens(vectors, boxes, torch.zeros(4, 4, 1)).reshape(4, 4)
    assert grid.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 2]]
    # drawn later, a box over the first covers it
    grid = grid_tokens(vectors, [boxes[0], (0.0, 0.0, 0.3, 0.3)], torch.zeros(4, 4, 1)).reshape(4, 4)
    assert grid[0].tolist() == [2, 1, 0, 0] and grid[1, 0] == 1


def test_grid_layout_puts_a_cell_per_patch_before_the_question(tok) -> None:
    model = _SaysYes(torch.nn.Embedding(len(tok), 8), 0)
    batcher = LookupBatcher(model, tok, layout="grid", cells=3, background=0.0)
    scene = (LookupObject("star", "red", (0.0, 0.0, 0.4, 0.4)),)
    question = LookupQuestion(scene, "What color is the star?", "red", "color")
    embeds, _, _, spans = batcher.batch([question], random.Random(0))
    before, after, _ = batcher.tokens(question)
    assert spans[0][0] == len(before) + 9 + len(after)
    cells = embeds[0, len(before) : len(before) + 9]
    painted = cells.norm(dim=-1) > 0
    assert painted.tolist() == [True] + [False] * 8  # only the top-left cell's centre is in the box
    assert torch.allclose(cells[0].norm(), torch.tensor(batcher.norm))
    with pytest.raises(ValueError, match="layout one of"):
        LookupProbeConfig(layout="rows")


@pytest.mark.slow  # trains a Llama for 160 steps (minutes on a loaded CPU)
def test_a_tiny_llama_learns_the_one_object_lookup(tok) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    scenes = [(LookupObject(shape, colour),) for shape in SHAPES for colour in COLOR_NAMES]
    random.Random(0).shuffle(scenes)
    report = run_lookup_probe(
        model, tok, scenes[:80], scenes[80:], LookupProbeConfig.tiny(steps=160, batch=32, eval_every=80)
    )
    assert [p["step"] for p in report["curve"]] == [0, 80, 160]
    assert report["shortcuts"]["random_object_colour"] == 1.0  # one object: reading it is the whole task
    assert 0.3 < report["shortcuts"]["always_yes_existence"] < 0.7  # half the existence probes are absent
    first, last = report["curve"][0], report["final"]
    # unseen (shape, colour) pairs: the colour can only come from the object token
    assert first["color"] < 0.2 and last["color"] >= 0.8, report["curve"]


def test_cli_names_a_bad_world(tmp_path: Path, capsys) -> None:
    assert main(["--lm", str(tmp_path), "--world", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "instances_train.json: not found" in capsys.readouterr().err
