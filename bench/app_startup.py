"""Start-up to ready: ``python app.py`` from spawn until it answers HTTP, and until a first chat with an image
has been answered, against a bare Gradio app (one Textbox) started the same way in the same run.

    python bench/app_startup.py                      # the embedded model (or a tiny stand-in, with a note)
    python bench/app_startup.py --repeats 5 --out runs/bench/app_startup.json

"Ready" for the app means the model is loaded too: it preloads the default model before serving, so the
first question is answered at once. Runs are interleaved (bare, app, bare, app, ...) so machine load hits
both alike; medians are reported. Goal (issue 5): app ready <= 20 s on 2 cores with the embedded model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from app_common import ROOT, app_command, pick_model, scratch_dir, start, test_image

BARE_APP = (
    "import gradio as gr\n"
    "with gr.Blocks(analytics_enabled=False) as demo:\n"
    "    gr.Textbox()\n"
    "demo.launch(server_name='127.0.0.1', server_port={port}, ssr_mode=False)\n"
)
GOAL_S = 20.0


def first_answer_s(url: str, image: str, spawned_at: float) -> float:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict("What is in the picture?", [handle_file(image)], 0.0, 0.7, 8, api_name="/chat")
    return time.perf_counter() - spawned_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="preset or checkpoint (default: the embedded model, else a tiny one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the JSON result here (atomically)")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    with scratch_dir() as scratch_name:
        from pathlib import Path

        scratch = Path(scratch_name)
        choice = pick_model(args.model, scratch)
        image = str(test_image(scratch))
        app_cmd = app_command(choice.model)
        bare_cmd = [sys.executable, "-c", BARE_APP]
        bare, http, chat = [], [], []
        for _ in tqdm(range(args.repeats), desc="start-ups", unit="pair"):
            running = start(bare_cmd, scratch, "bare")
            bare.append(running.ready_s)
            running.stop()
            running = start(app_cmd, scratch, "app")
            http.append(running.ready_s)
            try:
                chat.append(first_answer_s(running.url, image, running.spawned_at))
            finally:
                running.stop()
    result = {
        "model": choice.model,
        "note": choice.note,
        "repeats": args.repeats,
        "bare_gradio_ready_s": round(statistics.median(bare), 2),
        "app_http_ready_s": round(statistics.median(http), 2),
        "app_first_answer_s": round(statistics.median(chat), 2),
        "app_overhead_over_bare_s": round(statistics.median(http) - statistics.median(bare), 2),
        "goal_s": GOAL_S,
        "meets_goal": statistics.median(http) <= GOAL_S,
        "all_runs": {"bare": bare, "app_http": http, "app_first_answer": chat},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        sys.path.insert(0, str(ROOT))
        from vision_common.atomic import atomic_write_json

        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
