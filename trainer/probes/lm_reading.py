"""Does a language model read a scene from its context? A text-only probe of the skill a LLaVA's LM needs.

    python -m trainer.probes.lm_reading --lm DIR --world DIR [--limit 400] [--json] [--out FILE]

A LLaVA answers "What color is the star?" by finding the star among the image tokens and reading its colour:
an in-context lookup done by the language model. This probe asks the held-out SynthWorld questions (the
``vqa`` and ``pope`` eval sets, test scenes) of the LM alone, twice: once with the scene written out as text
in the user turn (``trainer.synthworld.scene_text``, the best "image tokens" there could be) and once without
(the text prior). Each answer is scored teacher-forced: correct when the LM's greedy next token is right at
every answer token, in the ``vicuna_v1`` layout the LLaVA trains with. With-scene accuracy near the prior
means the LM cannot do the lookup, and no projector or vision tower can make the LLaVA do it either.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from trainer.foundation.corpus import render_vicuna_v1
from trainer.llava.eval.data import EvalDataError, EvalItem, load_eval_sets, select_items
from trainer.synthworld.scene_text import scene_description
from trainer.synthworld.scene_view import SceneView, views_from_coco
from vision_common.atomic import emit_json_report

READ_SETS = ("vqa", "pope")
ANNOTATIONS = "scenes/annotations/instances_{split}.json"

# input_ids [B, T] (right-padded), attention_mask [B, T] -> logits [B, T, V]
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ReadingPrompt:
    ids: tuple[int, ...]  # prompt + answer tokens
    answer_start: int  # index of the first answer token in ``ids``
    category: str


def scene_views(world: Path, split: str = "test") -> dict[str, SceneView]:
    """Scene views by the image path the eval sets use (``scenes/images/<split>/<file>``)."""
    path = world / ANNOTATIONS.format(split=split)
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        return {f"scenes/images/{split}/{image['file_name']}": view for image, view in views_from_coco(coco)}
    except FileNotFoundError as exc:
        raise EvalDataError(f"{path}: not found (is --world a SynthWorld folder?)") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise EvalDataError(f"{path}: malformed annotations ({exc})") from exc


def build_prompt(tokenizer: Any, item: EvalItem, scene: str | None) -> ReadingPrompt:
    """The ``vicuna_v1`` rendering of one question (after ``scene`` when given) and its reference answer.

    Prompt and answer are tokenized apart and joined, so the answer's tokens are exactly those that follow
    "ASSISTANT:" in training ("ASSISTANT: red</s>" tokenizes the answer as " red")."""
    question = f"{scene}\n{item.text}" if scene else item.text
    prompt = render_vicuna_v1([{"from": "human", "value": question}], where=item.where) + "ASSISTANT:"
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(f" {item.answer}", add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise EvalDataError(f"{item.where}: the answer {item.answer!r} tokenizes to nothing")
    return ReadingPrompt(tuple(prompt_ids + answer_ids), len(prompt_ids), item.category)


def answer_correct(
    logits_fn: LogitsFn, prompts: Sequence[ReadingPrompt], pad_id: int, batch_size: int = 32
) -> list[bool]:
    """Per prompt: does the greedy next token equal the reference at every answer position?"""
    correct: list[bool] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p.ids) for p in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            ids[row, : len(prompt.ids)] = torch.tensor(prompt.ids)
            mask[row, : len(prompt.ids)] = 1
        with torch.no_grad():
            guesses = logits_fn(ids, mask).argmax(-1)
        for row, prompt in enumerate(batch):
            end = len(prompt.ids)
            # the logits at position t predict token t + 1
            predicted = guesses[row, prompt.answer_start - 1 : end - 1]
            correct.append(bool((predicted == ids[row, prompt.answer_start : end]).all()))
    return correct


def summarize(correct: Sequence[bool], prompts: Sequence[ReadingPrompt]) -> dict[str, Any]:
    by_category: dict[str, list[bool]] = {}
    for flag, prompt in zip(correct, prompts):
        by_category.setdefault(prompt.category, []).append(flag)
    return {
        "accuracy": round(sum(correct) / len(correct), 4) if correct else 0.0,
        "by_category": {name: round(sum(v) / len(v), 4) for name, v in sorted(by_category.items())},
    }


def run_reading_probe(
    logits_fn: LogitsFn,
    tokenizer: Any,
    items: Sequence[EvalItem],
    views: dict[str, SceneView],
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy with the scene in context and without it, overall and per category, on the same questions."""
    missing = sorted({item.image for item in items} - set(views))
    if missing:
        raise EvalDataError(f"no scene annotations for {len(missing)} eval image(s), e.g. {missing[0]}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    report: dict[str, Any] = {"questions": len(items)}
    for condition in ("with_scene", "without_scene"):
        prompts = [
            build_prompt(
                tokenizer, item, scene_description(views[item.image]) if condition == "with_scene" else None
            )
            for item in tqdm(items, desc=condition, unit="question", file=sys.stderr, disable=not progress)
        ]
        report[condition] = summarize(answer_correct(logits_fn, prompts, pad_id), prompts)
    report["gain"] = round(report["with_scene"]["accuracy"] - report["without_scene"]["accuracy"], 4)
    return report


def load_items(world: Path, limit: int) -> list[EvalItem]:
    sets = load_eval_sets(world, "test", READ_SETS)
    items: list[EvalItem] = []
    for name in READ_SETS:
        chosen = select_items(sets[name], limit)
        # pope's category is the sampling strategy; reading is about the answer, so score it as "yes_no"
        items += [item if name != "pope" else _as_yes_no(item) for item in chosen]
    return items


def _as_yes_no(item: EvalItem) -> EvalItem:
    return replace(item, category="yes_no")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.probes.lm_reading", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--lm", type=Path, required=True, help="causal LM directory (with its tokenizer)")
    parser.add_argument("--world", type=Path, required=True, help="SynthWorld folder (eval/ and scenes/)")
    parser.add_argument("--limit", type=int, default=400, help="questions per eval set, category-balanced")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error("--limit must be >= 1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    try:
        items = load_items(args.world, args.limit)
        views = scene_views(args.world)
        tokenizer = AutoTokenizer.from_pretrained(args.lm)
        model = AutoModelForCausalLM.from_pretrained(args.lm).eval()
    except (EvalDataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def logits_fn(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits

    report = {"lm": str(args.lm)} | run_reading_probe(
        logits_fn, tokenizer, items, views, not args.no_progress
    )
    if not emit_json_report(report, args.out, args.json):
        for condition in ("with_scene", "without_scene"):
            r = report[condition]
            print(f"{condition}: {r['accuracy']:.3f} {r['by_category']}")
        print(f"gain from reading the scene: {report['gain']:+.3f} ({report['questions']} questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
