"""Load: N concurrent ``gradio_client`` sessions, each a 3-turn conversation (an image, then two follow-ups),
against ``python app.py``; time-to-first-token percentiles, against one session alone in the same run.

    python bench/app_load.py                          # 8 sessions x 3 turns, the embedded model (or a stand-in)
    python bench/app_load.py --sessions 8 --turns 3 --max-new-tokens 32 --concurrency 1

TTFT is measured by the client, from ``submit`` to the first streamed output with text, so it includes the
wait in Gradio's queue (one generation at a time by default: a CPU model answers one question at a time).
The app's own ``first_token_s`` (backend start to first text, without the queue) is reported next to it.
The baseline is the same conversation from a single session with the app otherwise idle. Every turn must
succeed: errors are counted and make the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app_common import ROOT, app_command, pick_model, scratch_dir, start, test_image

QUESTIONS = (
    "What is in the picture?",
    "What colour is the largest shape?",
    "Is there any text in the image?",
)


@dataclass(frozen=True)
class Turn:
    session: int
    turn: int
    ttft_s: float | None
    total_s: float
    app_first_token_s: float | None
    finish_reason: str | None
    error: str | None


def converse(url: str, session: int, image: str, turns: int, max_new_tokens: int) -> list[Turn]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    results = []
    for turn in range(turns):
        images = [handle_file(image)] if turn == 0 else []
        started = time.perf_counter()
        first = None
        try:
            job = client.submit(
                QUESTIONS[turn % len(QUESTIONS)], images, 0.0, 0.7, max_new_tokens, api_name="/chat"
            )
            for answer, _info in job:
                if first is None and answer:
                    first = time.perf_counter() - started
            answer, info = job.result()
            results.append(
                Turn(
                    session,
                    turn,
                    first,
                    time.perf_counter() - started,
                    info["first_token_s"],
                    info["finish_reason"],
                    None,
                )
            )
        except Exception as exc:  # noqa: BLE001 - counted and reported, the other sessions go on
            results.append(
                Turn(
                    session,
                    turn,
                    first,
                    time.perf_counter() - started,
                    None,
                    None,
                    f"{type(exc).__name__}: {exc}",
                )
            )
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(turns: list[Turn]) -> dict:
    ttft = [t.ttft_s for t in turns if t.ttft_s is not None]
    app_ttft = [t.app_first_token_s for t in turns if t.app_first_token_s is not None]
    return {
        "turns": len(turns),
        "errors": sum(t.error is not None for t in turns),
        "ttft_p50_s": round(statistics.median(ttft), 3) if ttft else None,
        "ttft_p95_s": round(percentile(ttft, 0.95), 3) if ttft else None,
        "app_first_token_p95_s": round(percentile(app_ttft, 0.95), 3) if app_ttft else None,
        "turn_total_p95_s": round(percentile([t.total_s for t in turns], 0.95), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="preset or checkpoint (default: the embedded model, else a tiny one)")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=1, help="the app's --concurrency")
    parser.add_argument("--out", help="also write the JSON result here (atomically)")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    with scratch_dir() as scratch_name:
        scratch = Path(scratch_name)
        choice = pick_model(args.model, scratch)
        image = str(test_image(scratch))
        command = app_command(choice.model)
        running = start([*command, "--concurrency", str(args.concurrency)], scratch, "app")
        try:
            baseline = converse(running.url, -1, image, args.turns, args.max_new_tokens)
            results: list[Turn] = []
            lock = threading.Lock()
            progress = tqdm(total=args.sessions * args.turns, desc="turns", unit="turn")

            def session(number: int) -> None:
                turns = converse(running.url, number, image, args.turns, args.max_new_tokens)
                with lock:
                    results.extend(turns)
                    progress.update(len(turns))

            started = time.perf_counter()
            threads = [threading.Thread(target=session, args=(n,)) for n in range(args.sessions)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            progress.close()
        finally:
            running.stop()
    result = {
        "model": choice.model,
        "note": choice.note,
        "sessions": args.sessions,
        "turns_per_session": args.turns,
        "max_new_tokens": args.max_new_tokens,
        "app_concurrency": args.concurrency,
        "baseline_single_session": summary(baseline),
        "loaded": {**summary(results), "wall_s": round(wall, 2)},
        "failures": [asdict(t) for t in results + baseline if t.error],
    }
    print(json.dumps(result, indent=1))
    if args.out:
        sys.path.insert(0, str(ROOT))
        from vision_common.atomic import atomic_write_json

        atomic_write_json(args.out, result)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
