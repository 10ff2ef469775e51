"""Benchmark: eval questions answered one at a time (the chat backend) vs in batches (one ``generate`` each).

    python -m bench.eval_batch [--model synthworld-llava-next] [--world DIR] [--questions 64]
                               [--batch-sizes 8,16,32,64] [--threads N] [--json-out results.json]

The same questions (``--questions`` from each of the vqa / pope / detail sets of the world's test split,
category-balanced as the eval picks them) are answered by ``BackendAnswerer`` (the chat backend, one
streamed ``generate`` per question: the baseline) and by ``BatchedLocalAnswerer`` at each batch size, all in
one process with the same loaded model, so machine load hits them alike. Before any number is printed the
batched answers are checked to equal the baseline's (a fast path that answers differently cannot win). The
table gives wall seconds, CPU seconds (all threads; on a shared machine the steadier number), questions per
second and both ratios against the baseline measured in this run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from llava_demo.backends import make_backend
from trainer.llava.eval.batch import BatchedLocalAnswerer
from trainer.llava.eval.data import load_eval_sets, open_eval_image, select_items
from trainer.llava.eval.run import BackendAnswerer, Question, answer_questions
from vision_common.atomic import atomic_write_json

SETS = ("vqa", "pope", "detail")


def eval_questions(world: Path, per_set: int, max_new_tokens: int) -> list[Question]:
    sets = load_eval_sets(world, "test", SETS)
    return [
        Question(open_eval_image(world, item.image, item.where), item.text, max_new_tokens, item.where)
        for name in SETS
        for item in select_items(sets[name], per_set)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_batch", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="synthworld-llava-next", help="preset name or model directory")
    parser.add_argument("--world", type=Path, default=Path(".cache/synthworld/default-seed0"))
    parser.add_argument("--questions", type=int, default=64, help="questions per set (vqa, pope, detail)")
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.batch_sizes.split(",") if size.strip()]
    questions = eval_questions(args.world, args.questions, args.max_new_tokens)
    print(
        f"{len(questions)} questions from {args.world}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    with make_backend("local", args.model, device="cpu") as backend:
        started, cpu = time.perf_counter(), time.process_time()
        baseline = answer_questions(BackendAnswerer(backend), questions, progress=False)
        base_seconds, base_cpu = time.perf_counter() - started, time.process_time() - cpu
        rows.append(
            {
                "path": "one at a time (chat backend)",
                "batch_size": 1,
                "seconds": base_seconds,
                "cpu": base_cpu,
            }
        )
        batched = BatchedLocalAnswerer(backend)
        for size in sizes:
            started, cpu = time.perf_counter(), time.process_time()
            answers = answer_questions(batched, questions, batch_size=size, progress=False)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            differ = sum(a != b for a, b in zip(answers, baseline))
            if differ:
                raise SystemExit(
                    f"batch size {size}: {differ} of {len(questions)} answers differ from the baseline"
                )
            rows.append({"path": "batched generate", "batch_size": size, "seconds": seconds, "cpu": cpu})
    header = f"{'path':30} {'batch':>5} {'wall s':>7} {'cpu s':>7} {'q/s':>7} {'wall x':>7} {'cpu x':>7}"
    print(header)
    for row in rows:
        row["questions_per_second"] = len(questions) / row["seconds"]
        row["speedup_wall"] = base_seconds / row["seconds"]
        row["speedup_cpu"] = base_cpu / row["cpu"]
        print(
            f"{row['path']:30} {row['batch_size']:>5} {row['seconds']:>7.1f} {row['cpu']:>7.1f} "
            f"{row['questions_per_second']:>7.2f} {row['speedup_wall']:>6.2f}x {row['speedup_cpu']:>6.2f}x"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}; every batched answer equals the baseline's")
    if args.json_out is not None:
        atomic_write_json(args.json_out, {"questions": len(questions), "model": args.model, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
