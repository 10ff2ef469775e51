"""Precision@k of class-query retrieval on a SynthWorld task, against the base rate of a random pool sample.

    python bench/react_precision.py --index DIR --world .cache/synthworld/default-seed0 [--task species]
        [--mode t2i t2t] [--k 50] [--templates openai]

For each class of ``tasks/<task>/classes.txt`` the class x template prompts are retrieved as
``python -m react_explorer.retrieve`` does (top ``--per-prompt`` per prompt, union per class, no dedup), and the
best ``k`` pairs of the class are scored two ways:

* caption precision: the caption names the class (whole word, case-insensitive), the acceptance criterion;
* truth precision: the image really shows the class (``pool/pool_truth.parquet``: any object of that species,
  shape or colour), which catches pairs whose caption is SEO junk or another image's (5 % are mismatched).

The base rate is the same fraction over the whole pool, i.e. the expected precision of a random sample; the lift
is precision / base rate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from react_explorer.embedding.encoders import load_encoder  # noqa: E402
from react_explorer.embedding.model_spec import parse_model_spec  # noqa: E402
from react_explorer.index.clip_index import ClipIndex  # noqa: E402
from react_explorer.retrieval.class_queries import RetrievalConfig, retrieve_classes  # noqa: E402
from react_explorer.retrieval.prompt_templates import load_templates, read_class_file  # noqa: E402

TRUTH_FIELD = {"species": "species", "shapes": "shape", "colors": "color"}


def names_class(caption: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name.lower())}\b", caption.lower()) is not None


def truth_sets(world: Path, task: str, keys: list[str]) -> dict[str, set[str]] | None:
    """class value -> keys whose image holds an object with that value (None if the world has no truth file)."""
    path = world / "pool" / "pool_truth.parquet"
    if not path.is_file() or task not in TRUTH_FIELD:
        return None
    field = TRUTH_FIELD[task]
    shows: dict[str, set[str]] = {}
    for row in pq.read_table(path).to_pylist():
        for obj in json.loads(row["objects"]):
            if obj.get(field):
                shows.setdefault(obj[field], set()).add(row["key"])
    return shows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--world", default=str(REPO / ".cache" / "synthworld" / "default-seed0"))
    parser.add_argument("--task", default="species")
    parser.add_argument("--model", default=None, help="default: the model in the index manifest")
    parser.add_argument("--mode", nargs="+", default=["t2i", "t2t"])
    parser.add_argument("--templates", default="openai")
    parser.add_argument("--k", type=int, default=50, help="pairs per class that are scored")
    parser.add_argument("--per-prompt", type=int, default=50, help="results per prompt (REACT's default 50)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    world = Path(args.world)
    index = ClipIndex.load(args.index, verify_checksums=False)
    encoder = load_encoder(parse_model_spec(args.model or index.model))
    classes = read_class_file(world / "tasks" / args.task / "classes.txt")
    templates = load_templates(args.templates)
    keys = index.metadata.column("key").to_pylist()
    captions = index.metadata.column("caption").to_pylist()
    shows = truth_sets(world, args.task, keys)
    results: dict = {"index": str(args.index), "model": encoder.model_id, "task": args.task, "k": args.k,
                     "templates": args.templates, "per_prompt": args.per_prompt, "modes": {}}  # fmt: skip
    for mode in args.mode:
        cfg = RetrievalConfig(mode=mode, k=args.per_prompt, dedup=False)
        retrieval = retrieve_classes(index, encoder, classes, templates, cfg)
        per_class = {}
        for name in classes:
            top = retrieval.per_class.get(name, [])[: args.k]
            naming = sum(names_class(c, name) for c in captions)
            base_caption = naming / len(captions)
            entry = {
                "retrieved": len(top),
                # A class with fewer than k naming captions in the pool cannot reach precision 1.
                "caption_max_precision": min(args.k, naming) / args.k,
                "caption_precision": float(np.mean([names_class(captions[h.id], name) for h in top]))
                if top
                else 0.0,
                "caption_base_rate": base_caption,
            }
            if shows is not None:
                truth = shows.get(name, set())
                entry["truth_precision"] = float(np.mean([keys[h.id] in truth for h in top])) if top else 0.0
                entry["truth_base_rate"] = len(truth) / len(keys)
            per_class[name] = entry
        summary = {key: float(np.mean([e[key] for e in per_class.values()]))
                   for key in next(iter(per_class.values())) if key != "retrieved"}  # fmt: skip
        results["modes"][mode] = {"mean": summary, "per_class": per_class}
        print(f"{mode}: mean caption precision@{args.k} {summary['caption_precision']:.3f} "
              f"(base rate {summary['caption_base_rate']:.4f})"
              + (f", truth precision {summary['truth_precision']:.3f} (base {summary['truth_base_rate']:.4f})"
                 if shows is not None else ""))  # fmt: skip
        for name, entry in per_class.items():
            print(
                "  " + name + ": " + ", ".join(f"{k} {v:.3f}" for k, v in entry.items() if k != "retrieved")
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
