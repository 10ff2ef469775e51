"""OpenAI-compatible API server for LLaVA-NeXT: makes a CPU machine (or any backend) look like SGLang.

    python -m llava_demo.server                                  # the embedded SynthWorld model, 127.0.0.1:30000
    python -m llava_demo.server --model path/to/checkpoint --port 8000
    python -m llava_demo.server --backend openai --backend-url http://gpu-box:30000/v1 --model default

Any OpenAI client then works: ``openai.OpenAI(base_url="http://127.0.0.1:30000/v1", api_key="none")``.
Endpoints, limits and error codes: ``docs/server.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from llava_demo.backends.base import BACKEND_KINDS, BackendError, ChatBackend
from llava_demo.backends.factory import make_backend
from llava_demo.presets import PresetError, UnknownModelError, resolve_model
from llava_demo.server.app import create_app
from llava_demo.server.config import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MODEL,
    DEFAULT_PORT,
    ServerConfig,
    ServerConfigError,
)
from vision_common.chat.templates import UnknownTemplateError, get_template
from vision_common.cli_help import HelpFormatter
from vision_common.logging_setup import configure_logging

log = logging.getLogger("llava_demo.server.cli")
EXIT_STARTUP_ERROR = 2


class StartupError(RuntimeError):
    """The server cannot start; the message says what is missing and how to fix it."""


def check_local_model(model: str, project_root: Path | None = None) -> None:
    """Fail early, with instructions, when a local checkpoint (the embedded default above all) is missing."""
    try:
        resolved = resolve_model(model, project_root=project_root)
    except (UnknownModelError, PresetError) as exc:
        raise StartupError(str(exc)) from exc
    if resolved.source != "local":
        return
    folder = Path(resolved.checkpoint)
    if (folder / "config.json").is_file():
        return
    if resolved.name == DEFAULT_MODEL:
        raise StartupError(
            f"the embedded model {DEFAULT_MODEL!r} is not built yet (expected {folder}/config.json). "
            "Build it with the project's trainer (see README, 'SynthWorld and the foundation models': "
            "`python -m trainer.recipe synthworld` writes assets/), or serve another checkpoint with "
            "--model PATH_OR_HUB_ID"
        )
    raise StartupError(
        f"model {model!r}: {folder} has no config.json; is it a transformers checkpoint folder?"
    )


def backend_options(args: argparse.Namespace, config: ServerConfig) -> dict[str, Any]:
    """The ``make_backend`` options the command line sets for the chosen backend kind."""
    if args.backend == "local":
        options: dict[str, Any] = {
            "device": args.device,
            "dtype": args.dtype,
            "image_limits": config.image_limits(),
        }
        if args.template:
            options["template"] = args.template
        if args.context_length:
            options["context_length"] = args.context_length
        return options
    return remote_backend_options(args.backend, args.backend_url, args.backend_api_key)


def remote_backend_options(kind: str, url: str | None, api_key: str | None) -> dict[str, Any]:
    """Options for the HTTP backends; their config classes name the URL differently."""
    options: dict[str, Any] = {}
    if url:
        options["url" if kind == "sglang" else "base_url"] = url
    if api_key:
        options["api_key"] = api_key
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava_demo.server",
        description="Serve LLaVA-NeXT over the OpenAI chat-completions API (images, streaming, usage), "
        "with SGLang's /health and /v1/models.",
        formatter_class=HelpFormatter,
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"preset, checkpoint folder or hub id (default: {DEFAULT_MODEL}); the served model name for --backend openai/sglang",
    )
    model.add_argument(
        "--backend",
        choices=BACKEND_KINDS,
        default="local",
        help="local: transformers in this process (default); sglang/openai: forward to a server",
    )
    model.add_argument("--backend-url", help="base URL of the SGLang/OpenAI-compatible server to forward to")
    model.add_argument("--backend-api-key", help="API key for --backend-url")
    model.add_argument("--served-model-name", help="the name /v1/models reports (default: --model)")
    model.add_argument("--template", help="builtin chat template overriding the preset's (local backend)")
    model.add_argument("--device", default="auto", help="local backend: auto, cpu, cuda, cuda:N, mps")
    model.add_argument("--dtype", default="auto", help="local backend: auto, float32, bfloat16, float16")
    model.add_argument("--context-length", type=int, help="local backend: tokens the model may see")
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1; 0.0.0.0 exposes the server to the network)",
    )
    net.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}, SGLang's; 0 picks a free one)",
    )
    net.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/* (health stays open)")
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-concurrency", type=int, default=1, help="generations running at once (default 1)"
    )
    limits.add_argument(
        "--max-queue", type=int, default=16, help="requests waiting for a slot before 429 (default 16)"
    )
    limits.add_argument(
        "--max-tokens",
        type=int,
        default=512,
        dest="default_max_tokens",
        help="answer length when a request sets none (default 512)",
    )
    limits.add_argument(
        "--max-request-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="largest request body; bigger ones get 413 (default 64 MiB)",
    )
    limits.add_argument(
        "--max-request-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help="characters of text in one request; more gets 400 before tokenizing",
    )
    limits.add_argument(
        "--max-message-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help="characters of text in one message; more gets 400 before tokenizing",
    )
    limits.add_argument(
        "--image-root", type=Path, help="clients may name image files inside this folder only"
    )
    limits.add_argument(
        "--allow-remote-images",
        action="store_true",
        help="fetch http(s) image URLs (off: clients could make the server fetch any host)",
    )
    limits.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="decompression-bomb guard per image (default 40,000,000)",
    )
    net.add_argument(
        "--stream-interval-ms",
        type=float,
        default=20.0,
        help="least time between streamed chunks; deltas in between are merged (default 20; 0: no wait)",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    if args.template:
        try:
            get_template(args.template)
        except UnknownTemplateError as exc:
            raise StartupError(f"--template: {exc}") from exc
        if args.backend != "local":
            raise StartupError(
                "--template applies to the local backend; a remote server renders its own prompts"
            )
    if args.backend == "openai" and not args.backend_url:
        raise StartupError(
            "--backend openai needs --backend-url (the OpenAI-compatible server to forward to)"
        )
    try:
        config = ServerConfig(
            model=args.model,
            backend=args.backend,
            served_model_name=args.served_model_name,
            host=args.host,
            port=args.port,
            max_concurrency=args.max_concurrency,
            max_queue=args.max_queue,
            image_root=args.image_root,
            allow_remote_images=args.allow_remote_images,
            max_pixels=args.max_pixels,
            api_key=args.api_key,
            default_max_tokens=args.default_max_tokens,
            max_request_bytes=args.max_request_bytes,
            max_request_chars=args.max_request_chars,
            max_message_chars=args.max_message_chars,
            stream_interval_ms=args.stream_interval_ms,
        )
    except ServerConfigError as exc:
        raise StartupError(str(exc)) from exc
    return replace(config, backend_options=backend_options(args, config))


def load_backend(config: ServerConfig) -> ChatBackend:
    if config.backend == "local":
        check_local_model(config.model)
    try:
        return make_backend(config.backend, config.model, **config.backend_options)
    except (BackendError, ValueError) as exc:
        raise StartupError(f"cannot start the {config.backend} backend for {config.model!r}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level.upper())
    try:
        config = config_from_args(args)
        if not config.loopback_only and config.api_key is None:
            log.warning(
                "binding %s without --api-key: anyone who can reach this port can use the model", config.host
            )
        backend = load_backend(config)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    # Imported after the checks so `--help` and start-up errors stay fast.
    import uvicorn

    app = create_app(backend, config)
    log.info(
        "serving %s (%s backend) on http://%s:%d/v1",
        config.model_name,
        config.backend,
        config.host,
        config.port,
    )
    try:
        # Streams still open 5 s after Ctrl-C are cut, so stopping the server never hangs on a long answer.
        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
