"""Chat with LLaVA-NeXT from the terminal: one shot or interactive.

    python -m llava_demo.cli --image photo.png --prompt "What is in the picture?"      # streams the answer
    python -m llava_demo.cli --image photo.png                                         # interactive
    python -m llava_demo.cli --url http://127.0.0.1:30000/v1 --image photo.png --prompt "..."

Interactive commands: ``/image PATH`` attaches an image to the next message (any turn may add images),
``/reset`` starts over, ``/quit`` (or Ctrl-D) leaves. Ctrl-C stops the answer being written, not the
program. Notices (an animated GIF reduced to its first frame, old turns dropped to fit the context) and
errors go to stderr; the answer alone goes to stdout, so it can be piped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from llava_demo.backends.base import (
    BACKEND_KINDS,
    BackendError,
    CancelToken,
    ChatBackend,
    SamplingParams,
)
from llava_demo.backends.factory import make_backend
from llava_demo.server.cli import StartupError, check_local_model, remote_backend_options
from llava_demo.server.config import DEFAULT_MODEL
from vision_common.chat.conversation import Conversation
from vision_common.chat.templates import UnknownTemplateError, get_template
from vision_common.cli_help import HelpFormatter
from vision_common.images.load import ImageInputError, ImageLimits, LoadedImage, load_image

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
HELP_TEXT = "commands: /image PATH (attach to the next message), /reset, /quit; Ctrl-C stops an answer"


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None
    """"stop", "length", "cancelled" (Ctrl-C), or None when the backend failed."""


def load_images(paths: Sequence[str], limits: ImageLimits, err: TextIO) -> list[LoadedImage]:
    """Decode the images (``ImageInputError`` names the bad one); their notices go to ``err`` now."""
    loaded = []
    for path in paths:
        image = load_image(path, limits)
        for notice in image.notices:
            err.write(f"[note] {path}: {notice}\n")
        loaded.append(image)
    return loaded


def stream_answer(
    backend: ChatBackend, conversation: Conversation, params: SamplingParams, out: TextIO, err: TextIO
) -> Answer:
    """Write the answer to ``out`` as it arrives. Ctrl-C cancels this answer only (``finish_reason``
    "cancelled", partial text kept); a backend error is printed to ``err`` (``finish_reason`` None)."""
    cancel = CancelToken()
    parts: list[str] = []
    finish: str | None = None
    events = None
    try:
        events = backend.stream(conversation, params, cancel)
        for event in events:
            if event.kind == "delta":
                out.write(event.text)
                out.flush()
                parts.append(event.text)
            elif event.kind == "notice":
                err.write(f"[note] {event.text}\n")
            else:
                finish = event.finish_reason
    except KeyboardInterrupt:
        cancel.cancel()
        close = getattr(events, "close", None)
        if close is not None:
            close()  # runs the backend's cleanup (stops its generation thread) now
        finish = "cancelled"
    except BackendError as exc:
        out.write("\n" if parts else "")
        err.write(f"error: {exc}\n")
        return Answer("".join(parts), None)
    out.write("\n")
    out.flush()
    if finish == "cancelled":
        err.write("[stopped]\n")
    elif finish == "length":
        err.write("[note] the answer reached --max-tokens\n")
    return Answer("".join(parts), finish)


def repl(
    backend: ChatBackend,
    params: SamplingParams,
    *,
    read_line: Callable[[str], str],
    out: TextIO,
    err: TextIO,
    limits: ImageLimits,
    system: str | None = None,
    first_images: Sequence[LoadedImage] = (),
) -> int:
    """The interactive loop. ``read_line`` is ``input`` in a terminal (it raises EOFError at Ctrl-D)."""
    fresh = Conversation() if system is None else Conversation().with_system(system)
    conversation = fresh
    staged: list[LoadedImage] = list(first_images)
    err.write(HELP_TEXT + "\n")
    while True:
        try:
            line = read_line(f"you{f' [{len(staged)} image(s)]' if staged else ''}> ")
        except EOFError:
            out.write("\n")
            return EXIT_OK
        except KeyboardInterrupt:
            err.write("\n(Ctrl-C stops an answer; type /quit to leave)\n")
            continue
        text = line.strip()
        if text in ("/quit", "/exit"):
            return EXIT_OK
        if text == "/reset":
            conversation, staged = fresh, []
            err.write("[new conversation]\n")
            continue
        if text == "/help":
            err.write(HELP_TEXT + "\n")
            continue
        if text.startswith("/image"):
            path = text.removeprefix("/image").strip()
            if not path:
                err.write("usage: /image PATH\n")
                continue
            try:
                staged.extend(load_images([path], limits, err))
            except ImageInputError as exc:
                err.write(f"error: {exc}\n")
                continue
            err.write(f"[attached {path}; it goes with your next message]\n")
            continue
        if text.startswith("/"):
            err.write(f"unknown command {text.split()[0]!r}; {HELP_TEXT}\n")
            continue
        if not text and not staged:
            continue
        asked = conversation.with_user(text, staged)
        answer = stream_answer(backend, asked, params, out, err)
        if answer.finish_reason is None:
            continue  # the error was shown; the message and its images stay staged for a retry
        conversation, staged = asked.with_assistant(answer.text), []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava_demo.cli",
        description="Ask LLaVA-NeXT about images: one shot with --prompt, interactive without it.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--image", action="append", default=[], metavar="PATH", help="an image (repeat for several)"
    )
    parser.add_argument("--prompt", help="ask once, stream the answer to stdout and exit")
    parser.add_argument("--system", help="system prompt (default: the template's)")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"preset, checkpoint folder or hub id; with --url the served name (default: {DEFAULT_MODEL}, or 'default' with --url)",
    )
    parser.add_argument(
        "--backend", choices=BACKEND_KINDS, help="local (default), sglang, or openai (default with --url)"
    )
    parser.add_argument(
        "--url",
        help="an OpenAI-compatible server, e.g. http://127.0.0.1:30000/v1 (python -m llava_demo.server)",
    )
    parser.add_argument("--api-key", help="API key for --url")
    parser.add_argument("--template", help="builtin chat template overriding the preset's (local backend)")
    parser.add_argument("--device", default="auto", help="local backend: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--temperature", type=float, default=0.2, help="0 = greedy (default 0.2)")
    parser.add_argument("--top-p", type=float, default=0.7, help="nucleus sampling (default 0.7)")
    parser.add_argument("--max-tokens", type=int, default=512, help="answer length limit (default 512)")
    parser.add_argument("--seed", type=int, help="repeatable sampling")
    return parser


def _backend_from_args(args: argparse.Namespace) -> ChatBackend:
    kind = args.backend or ("openai" if args.url else "local")
    if kind == "local":
        if args.url:
            raise StartupError("--url talks to a server; it cannot be combined with --backend local")
        check_local_model(args.model)
        options: dict[str, object] = {"device": args.device}
        if args.template:
            options["template"] = args.template
        model = args.model
    else:
        if args.template:
            raise StartupError("--template applies to the local backend; a server renders its own prompts")
        options = remote_backend_options(kind, args.url, args.api_key)
        model = "default" if args.model == DEFAULT_MODEL and args.url else args.model
    try:
        return make_backend(kind, model, **options)
    except (BackendError, ValueError) as exc:
        raise StartupError(f"cannot start the {kind} backend for {model!r}: {exc}") from exc


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    limits = ImageLimits()
    try:
        if args.template:
            get_template(args.template)
        params = SamplingParams(
            temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_tokens, seed=args.seed
        )
        images = load_images(args.image, limits, err)
        if args.prompt is not None and not args.prompt.strip() and not images:
            raise ValueError("--prompt is empty and no --image was given: there is nothing to ask")
    except (ValueError, ImageInputError, UnknownTemplateError) as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    try:
        backend = _backend_from_args(args)
    except StartupError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    try:
        if args.prompt is None:
            return repl(
                backend,
                params,
                read_line=input,
                out=out,
                err=err,
                limits=limits,
                system=args.system,
                first_images=images,
            )
        conversation = Conversation() if args.system is None else Conversation().with_system(args.system)
        answer = stream_answer(backend, conversation.with_user(args.prompt, images), params, out, err)
    finally:
        backend.close()
    if answer.finish_reason is None:
        return EXIT_FAILED
    return EXIT_INTERRUPTED if answer.finish_reason == "cancelled" else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
