"""The part of SGLang conformance that needs a GPU: serve one checkpoint with SGLang and with the local
backend, ask both the same one-image question greedily, and compare the answers and token counts.

Run on a CUDA machine with the pinned sglang installed (``pip install -e '.[sglang]'``):

    python scripts/sglang_gpu_check.py

It exports the checkpoint (default: the embedded SynthWorld model) to the original-LLaVA layout with
``trainer.llava.export``, launches ``sglang.launch_server`` on the export through the ``sglang`` backend
(``--chat-template vicuna_v1.1``, the SGLang twin of the checkpoint's vicuna_v1), answers with the ``local``
backend on the transformers checkpoint, prints both as JSON and exits 0 only when the texts, the prompt
tokens and the completion tokens agree (1 otherwise; 2 when something could not run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from llava_demo.backends import SamplingParams, make_backend
from llava_demo.backends.sglang_version import SGLANG_VERSION
from trainer.llava.export import main as export_main
from vision_common.chat.conversation import Conversation

REPO_ROOT = Path(__file__).resolve().parent.parent


def answer(kind: str, model: str, conversation: Conversation, params: SamplingParams, **options: Any) -> dict:
    with make_backend(kind, model, **options) as backend:  # type: ignore[arg-type]
        completion = backend.complete(conversation, params)
    usage = completion.usage
    return {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "image_tokens": usage.image_tokens if usage else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "assets/models/synthworld-llava-next")
    parser.add_argument("--image", type=Path, default=REPO_ROOT / "assets/synthworld/examples/scene_1.png")
    parser.add_argument("--question", default="What objects are in this scene?")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--chat-template", default="vicuna_v1.1", help="SGLang template for the export")
    parser.add_argument("--local-device", default="cuda", help="device of the local backend")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep the export here (default: temporary)"
    )
    args = parser.parse_args(argv)
    conversation = Conversation().with_user(args.question, images=[str(args.image)])
    params = SamplingParams(temperature=0, max_new_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        # SGLang picks the CLIP tower by "clip" in its path; the export puts it in clip_vision_tower/.
        export_dir = (args.work_dir or Path(tmp)) / "llava-original"
        try:
            export_main(["--model", str(args.checkpoint), "--out", str(export_dir), "--format", "llava"])
            local = answer("local", str(args.checkpoint), conversation, params, device=args.local_device)
            sglang = answer(
                "sglang", str(export_dir), conversation, params, port=None, chat_template=args.chat_template
            )
        except Exception as exc:  # report what failed; the point of this script is to find out
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    same = {key: local[key] == sglang[key] for key in ("text", "prompt_tokens", "completion_tokens")}
    report = {"sglang_version": SGLANG_VERSION, "local": local, "sglang": sglang, "same": same}
    print(json.dumps(report, indent=1))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
