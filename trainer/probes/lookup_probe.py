"""Can a language model learn to look an object up among ideal "image tokens"? A vision-free stage-2 proxy.

    python -m trainer.probes.lookup_probe --lm DIR --world DIR [--steps 750] [--batch 128] [--lr 2e-3]
        [--eval-every 250] [--layout objects|grid] [--grid-cells 8] [--background 0.3] [--json] [--out FILE]

LLaVA stage 2 asks the LM to answer "What color is the star?" from image tokens: find the token that says
"star", read its colour. This probe removes everything visual and gives the LM the best image tokens there
could be: one input vector per object, the sum of its shape and colour word embeddings (scaled to a word
embedding's norm), placed where ``<image>`` sits in the ``vicuna_v1`` prompt. It then trains the LM (all of
it, as stage 2 does) on one question per sample, in the eval's short-answer format: the colour of a shape
present once, or POPE-style existence ("Is there a ring in the image?", half present, half absent). Scored
teacher-forced on held-out test scenes against the shortcut that needs no lookup (the colour of a random
object of the scene). How many questions the LM needs before colour beats that shortcut, and existence beats
always-"yes", is what a LLaVA recipe would need at least, with perfect vision. ``--layout grid`` lays the same
tokens out as image tokens come, on a square patch grid (each object over the cells its box covers, the rest
background noise).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from trainer.foundation.corpus import render_vicuna_v1
from trainer.llava.encode import IGNORE_INDEX
from trainer.llava.eval.data import EvalDataError
from trainer.probes.lm_reading import scene_views
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES
from trainer.synthworld.scene_view import SceneView
from vision_common.atomic import emit_json_report
from vision_common.chat.format_prompts import SHORT_ANSWER

KINDS = ("color", "yes", "no")
LAYOUTS = ("objects", "grid")
# Where the question sits relative to the image tokens in the human turn. With the image first (LLaVA's
# default) no image token can attend to the question; with the question before it every image token can
# compute "am I the named object" (issue #18's template lever).
PROMPT_ORDERS: dict[str, str] = {
    "image_first": "<image>\n{question}\n{suffix}",
    "question_first": "{question}\n<image>\n{suffix}",
    "question_image_question": "{question}\n<image>\n{question}\n{suffix}",
}


class LookupObject(NamedTuple):
    shape: str
    colour: str
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x, y, w, h as fractions of the image


SceneObjects = tuple[LookupObject, ...]


@dataclass(frozen=True)
class LookupProbeConfig:
    steps: int = 750
    # low-noise updates: content recall is learned at batch 64+, not at 16 (docs/foundation_models.md)
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 20
    eval_every: int = 250
    eval_questions: int = 600
    seed: int = 0
    # "objects": one token per object; "grid": the object's token painted on every cell of a square patch grid
    # that its box covers, other cells background noise (image tokens come as a patch grid)
    layout: str = "objects"
    grid_cells: int = 8
    background: float = 0.3  # background noise norm, as a fraction of a word embedding's
    prompt_order: str = "image_first"  # a key of PROMPT_ORDERS

    def __post_init__(self) -> None:
        if self.prompt_order not in PROMPT_ORDERS:
            raise ValueError(
                f"LookupProbeConfig.prompt_order must be one of {sorted(PROMPT_ORDERS)}, got {self.prompt_order!r}"
            )
        if self.layout not in LAYOUTS or self.grid_cells < 1 or self.background < 0:
            raise ValueError(
                f"LookupProbeConfig: layout one of {LAYOUTS}, grid_cells >= 1, background >= 0; got "
                f"{self.layout!r}, {self.grid_cells}, {self.background}"
            )
        if min(self.steps, self.batch, self.eval_every, self.eval_questions) < 1 or self.warmup < 0:
            raise ValueError("LookupProbeConfig: steps, batch, eval_every, eval_questions >= 1, warmup >= 0")
        if not 0 < self.lr < 1:
            raise ValueError(f"LookupProbeConfig.lr must be in (0, 1), got {self.lr}")

    @classmethod
    def tiny(cls, **overrides: Any) -> LookupProbeConfig:
        return cls(**{"steps": 40, "batch": 16, "lr": 3e-3, "warmup": 2, "eval_every": 20, "eval_questions": 64}
                   | overrides)  # fmt: skip


@dataclass(frozen=True)
class LookupQuestion:
    objects: SceneObjects
    question: str
    answer: str
    kind: str  # one of KINDS


def scene_objects(views: Iterable[SceneView]) -> list[SceneObjects]:
    """The shaped, coloured objects of each scene (signs carry no colour); scenes without any are dropped."""
    scenes = []
    for view in views:
        objects = tuple(
            LookupObject(o.category, o.color, _fraction_box(o.bbox, view.width, view.height))
            for o in view.objects
            if o.category in SHAPES and o.color
        )
        if objects:
            scenes.append(objects)
    return scenes


def sample_question(objects: SceneObjects, rng: random.Random) -> LookupQuestion:
    """Half colour questions (when a shape occurs once), else existence, half present and half absent."""
    counts = {obj.shape: sum(o.shape == obj.shape for o in objects) for obj in objects}
    unique = [obj for obj in objects if counts[obj.shape] == 1]
    if unique and rng.random() < 0.5:
        obj = rng.choice(unique)
        return LookupQuestion(objects, f"What color is the {obj.shape}?", obj.colour, "color")
    absent = [shape for shape in SHAPES if shape not in counts]
    if not absent or rng.random() < 0.5:
        return LookupQuestion(objects, f"Is there a {rng.choice(objects).shape} in the image?", "yes", "yes")
    return LookupQuestion(objects, f"Is there a {rng.choice(absent)} in the image?", "no", "no")


def random_object_colour_rate(questions: Sequence[LookupQuestion]) -> float:
    """Expected colour accuracy of answering with the colour of a random object of the scene (no lookup)."""
    rates = [
        sum(obj.colour == q.answer for obj in q.objects) / len(q.objects)
        for q in questions
        if q.kind == "color"
    ]
    return round(sum(rates) / len(rates), 4) if rates else 0.0


def object_vector(
    embedding: torch.Tensor, word_ids: dict[str, list[int]], words: Sequence[str], norm: float
) -> torch.Tensor:
    """The ideal image token of one object: sum of its words' (token-averaged) embeddings, scaled to ``norm``."""
    vector = sum(embedding[word_ids[word]].mean(0) for word in words)
    return vector / vector.norm() * norm


def grid_tokens(
    vectors: torch.Tensor, boxes: Sequence[tuple[float, float, float, float]], background: torch.Tensor
) -> torch.Tensor:
    """Paint each object's token [N, H] on the cells of the ``background`` grid [cells, cells, H] whose centre
    lies inside its box, and on the cell under the box's centre (so a small object still shows); later objects
    cover earlier ones, as in a drawing. Returns the grid row-major, [cells * cells, H]."""
    grid = background.clone()
    cells = grid.shape[0]
    centres = (torch.arange(cells) + 0.5) / cells
    for vector, (x, y, w, h) in zip(vectors, boxes):
        rows = (centres >= y) & (centres <= y + h)
        cols = (centres >= x) & (centres <= x + w)
        grid[rows[:, None] & cols[None, :]] = vector
        grid[min(int((y + h / 2) * cells), cells - 1), min(int((x + w / 2) * cells), cells - 1)] = vector
    return grid.reshape(cells * cells, -1)


def _fraction_box(bbox: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x, y, w, h = bbox
    return (x / width, y / height, w / width, h / height)


class LookupBatcher:
    """Question -> (inputs_embeds, labels, mask) in the vicuna_v1 layout, objects where ``<image>`` sits."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        layout: str = "objects",
        cells: int = 8,
        background: float = 0.3,
        prompt_order: str = "image_first",
    ) -> None:
        self.tokenizer, self.layout, self.cells, self.background = tokenizer, layout, cells, background
        self.human_template = PROMPT_ORDERS[prompt_order]
        self.embedding = model.get_input_embeddings()
        self.norm = float(self.embedding.weight.detach().norm(dim=-1).median())
        self.word_ids = {
            w: tokenizer(f" {w}", add_special_tokens=False)["input_ids"] for w in (*SHAPES, *COLOR_NAMES)
        }
        self.cache: dict[tuple[str, str], tuple[list[int], list[int], list[int]]] = {}

    def tokens(self, q: LookupQuestion) -> tuple[list[int], list[int], list[int]]:
        """Token ids of the prompt before the objects, the prompt after them, and the answer (scored; ``batch``
        appends the end-of-sequence token, which is trained but not scored)."""
        key = (q.question, q.answer)
        if key not in self.cache:
            human = self.human_template.format(question=q.question, suffix=SHORT_ANSWER)
            text = render_vicuna_v1([{"from": "human", "value": human}], where="lookup probe") + "ASSISTANT:"
            before, after = text.split("<image>")
            answer = self.tokenizer(f" {q.answer}", add_special_tokens=False)["input_ids"]
            self.cache[key] = (
                self.tokenizer(before, add_special_tokens=True)["input_ids"],
                self.tokenizer(after, add_special_tokens=False)["input_ids"],
                answer,
            )
        return self.cache[key]

    def batch(
        self, questions: Sequence[LookupQuestion], rng: random.Random
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """inputs_embeds [B, T, H], labels [B, T] (IGNORE_INDEX off the answer), mask [B, T], answer spans."""
        rows, labels, spans = [], [], []
        eos = [self.tokenizer.eos_token_id]
        for q in questions:
            before, after, answer = self.tokens(q)
            objects = list(q.objects)
            rng.shuffle(objects)  # an image has no reading order
            ids_before, ids_after = torch.tensor(before), torch.tensor(after + answer + eos)
            vectors = torch.stack(
                [
                    object_vector(self.embedding.weight, self.word_ids, (o.shape, o.colour), self.norm)
                    for o in objects
                ]
            )
            if self.layout == "grid":
                noise = torch.randn(self.cells, self.cells, vectors.shape[1])
                noise *= self.background * self.norm / vectors.shape[1] ** 0.5
                vectors = grid_tokens(vectors, [o.box for o in objects], noise)
            rows.append(torch.cat([self.embedding(ids_before), vectors, self.embedding(ids_after)]))
            start = len(before) + len(vectors) + len(after)
            labels.append([IGNORE_INDEX] * start + answer + eos)
            spans.append((start, start + len(answer)))
        width = max(len(row) for row in rows)
        embeds = torch.zeros(len(rows), width, rows[0].shape[1])
        target = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, (row, label) in enumerate(zip(rows, labels)):
            embeds[i, : len(row)], target[i, : len(label)], mask[i, : len(row)] = row, torch.tensor(label), 1
        return embeds, target, mask, spans


def score(
    model: Any, batcher: LookupBatcher, questions: Sequence[LookupQuestion], seed: int
) -> dict[str, float]:
    """Per kind: share of questions whose greedy next token is right at every answer token."""
    rng, right = random.Random(seed), {kind: [] for kind in KINDS}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(questions), 64):
            chunk = questions[start : start + 64]
            embeds, target, mask, spans = batcher.batch(chunk, rng)
            guesses = model(inputs_embeds=embeds, attention_mask=mask).logits.argmax(-1)
            for row, (q, (a, b)) in enumerate(zip(chunk, spans)):
                # the logits at position t predict token t + 1
                right[q.kind].append(bool((guesses[row, a - 1 : b - 1] == target[row, a:b]).all()))
    model.train()
    return {kind: round(sum(v) / len(v), 4) for kind, v in right.items() if v}


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else 0.0


def run_lookup_probe(
    model: Any,
    tokenizer: Any,
    train: Sequence[SceneObjects],
    test: Sequence[SceneObjects],
    config: LookupProbeConfig,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` in place on lookup questions about ``train`` scenes; score on ``test`` scenes."""
    if not train or not test:
        raise EvalDataError("the lookup probe needs scenes with coloured shapes in both splits")
    torch.manual_seed(config.seed)
    rng, held_rng = random.Random(config.seed), random.Random(config.seed + 1)
    held = [sample_question(held_rng.choice(test), held_rng) for _ in range(config.eval_questions)]
    batcher = LookupBatcher(
        model, tokenizer, config.layout, config.grid_cells, config.background, config.prompt_order
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    started = time.perf_counter()
    curve = [{"step": 0, "questions": 0, "seconds": 0.0} | score(model, batcher, held, config.seed)]
    model.train()
    for step in tqdm(
        range(1, config.steps + 1), desc="lookup", unit="update", file=sys.stderr, disable=not progress
    ):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, step / max(config.warmup, 1))
        embeds, target, mask, _ = batcher.batch(
            [sample_question(rng.choice(train), rng) for _ in range(config.batch)], rng
        )
        loss = model(inputs_embeds=embeds, attention_mask=mask, labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            seconds = round(time.perf_counter() - started, 1)
            point = {
                "step": step,
                "questions": step * config.batch,
                "seconds": seconds,
                "loss": round(loss.item(), 4),
            }
            curve.append(point | score(model, batcher, held, config.seed))
    return {
        "config": asdict(config),
        "train_scenes": len(train),
        "test_questions": len(held),
        "shortcuts": {
            "random_object_colour": random_object_colour_rate(held),
            "always_yes_existence": _share(q.answer == "yes" for q in held if q.kind != "color"),
        },
        "curve": curve,
        "final": curve[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.probes.lookup_probe", description=__doc__.split("\n")[0]
    )
    defaults = LookupProbeConfig()
    parser.add_argument("--lm", type=Path, required=True, help="causal LM directory (with its tokenizer)")
    parser.add_argument("--world", type=Path, required=True, help="SynthWorld folder (reads scenes/)")
    for name, kind in (("steps", int), ("batch", int), ("lr", float), ("warmup", int), ("eval_every", int),
                       ("eval_questions", int), ("seed", int), ("grid_cells", int), ("background", float)):  # fmt: skip
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(defaults, name))
    parser.add_argument(
        "--layout", choices=LAYOUTS, default=defaults.layout, help="one token per object, or a patch grid"
    )
    parser.add_argument(
        "--prompt-order",
        choices=sorted(PROMPT_ORDERS),
        default=defaults.prompt_order,
        help="where the question sits relative to the image tokens",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = LookupProbeConfig(**{name: getattr(args, name) for name in asdict(defaults)})
    except ValueError as exc:
        parser.error(str(exc))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    try:
        train = scene_objects(scene_views(args.world, "train").values())
        test = scene_objects(scene_views(args.world, "test").values())
        tokenizer = AutoTokenizer.from_pretrained(args.lm)
        model = AutoModelForCausalLM.from_pretrained(args.lm)
        report = {"lm": str(args.lm)} | run_lookup_probe(
            model, tokenizer, train, test, config, not args.no_progress
        )
    except (EvalDataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not emit_json_report(report, args.out, args.json):
        for point in report["curve"]:
            kinds = ", ".join(f"{kind} {point[kind]:.3f}" for kind in KINDS if kind in point)
            print(f"after {point['questions']:>7} questions ({point['seconds']:>6.1f} s): {kinds}")
        print(
            f"shortcut (colour of a random object of the scene): {report['shortcuts']['random_object_colour']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
