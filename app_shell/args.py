"""``python app.py`` flags and their environment variables (for Hugging Face Spaces, where Variables and Secrets
arrive as environment variables). A flag wins over its variable; the variable wins over the default.

No Gradio import: ``--help`` and bad-flag errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app_shell.settings import AppSettings
from llava_demo.backends.base import BACKEND_KINDS
from llava_demo.ui.settings import DEFAULT_FEEDBACK_LOG, DEFAULT_PORT, ChatSettings, SettingsError
from react_explorer.ui.explorer_config import add_explorer_arguments, explorer_config_from_args
from trainer.launcher.settings import add_launcher_arguments, launcher_settings_from_args

# Hugging Face sets SPACE_ID in every Space; there the app must listen on all interfaces.
SPACES_MARKER = "SPACE_ID"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class EnvOption:
    """One flag's environment variable and how to parse it."""

    flag: str
    variable: str
    parse: Callable[[str], Any]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {_TRUE + _FALSE[:-1]}")


def _parse_optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text.strip() else None


ENV_OPTIONS: tuple[EnvOption, ...] = (
    EnvOption("backend", "APP_BACKEND", str),
    EnvOption("model", "APP_MODEL", str),
    EnvOption("sglang_url", "APP_SGLANG_URL", str),
    EnvOption("openai_url", "APP_OPENAI_URL", str),
    EnvOption("launch_sglang", "APP_LAUNCH_SGLANG", _parse_bool),
    EnvOption("api_key", "APP_API_KEY", str),
    EnvOption("device", "APP_DEVICE", str),
    EnvOption("host", "APP_HOST", str),
    EnvOption("port", "APP_PORT", int),
    EnvOption("max_upload_mb", "APP_MAX_UPLOAD_MB", int),
    EnvOption("concurrency", "APP_CONCURRENCY", int),
    EnvOption("feedback_log", "APP_FEEDBACK_LOG", _parse_optional_path),
    EnvOption("examples", "APP_EXAMPLES", _parse_optional_path),
    EnvOption("stream_delay_ms", "APP_STREAM_DELAY_MS", int),
    EnvOption("preload", "APP_PRELOAD", _parse_bool),
)


def env_defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    """Parsed values of the ``APP_*`` variables that are set; a bad value names the variable."""
    values: dict[str, Any] = {}
    for option in ENV_OPTIONS:
        raw = environ.get(option.variable)
        if raw is None:
            continue
        try:
            values[option.flag] = option.parse(raw)
        except ValueError as exc:
            raise SettingsError(
                f"environment variable {option.variable}={raw!r} is not valid: {exc}"
            ) from exc
    return values


def default_host(environ: Mapping[str, str]) -> str:
    """127.0.0.1 (this machine only), or 0.0.0.0 on Hugging Face Spaces, whose proxy must reach the app."""
    return "0.0.0.0" if environ.get(SPACES_MARKER) else "127.0.0.1"


def default_port(environ: Mapping[str, str]) -> int:
    """Gradio's GRADIO_SERVER_PORT when set (Spaces and Gradio's tooling set it), else 7860."""
    raw = environ.get("GRADIO_SERVER_PORT")
    if raw is None:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable GRADIO_SERVER_PORT={raw!r} is not a port number") from exc


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser; defaults come from ``environ`` (``os.environ`` by default) so ``--help`` shows them."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Steerable visual intelligence: a Gradio app whose first tab chats with LLaVA-NeXT about "
        "images (AnyRes panel, streaming, Stop). Offline; analytics off; never shared publicly. Every flag "
        "has an environment variable (in brackets) for Hugging Face Spaces; a flag wins over its variable.",
    )
    model = parser.add_argument_group("model and backend")
    model.add_argument(
        "--backend",
        choices=BACKEND_KINDS,
        default="local",
        help="local: transformers in this process (default); sglang: an SGLang server (--sglang-url or "
        "--launch-sglang); openai: any OpenAI-compatible server (--openai-url) [APP_BACKEND]",
    )
    model.add_argument(
        "--model",
        default=ChatSettings.model,
        help="preset name, checkpoint folder or hub id; with sglang/openai the served model name "
        f"(default: {ChatSettings.model}, the embedded SynthWorld model) [APP_MODEL]",
    )
    model.add_argument(
        "--sglang-url", help="attach to this SGLang server, e.g. http://gpu:30000 [APP_SGLANG_URL]"
    )
    model.add_argument(
        "--launch-sglang",
        action="store_true",
        help="start sglang.launch_server for --model (GPU machines; needs the sglang extra) [APP_LAUNCH_SGLANG]",
    )
    model.add_argument(
        "--openai-url", help="OpenAI-compatible base URL for --backend openai [APP_OPENAI_URL]"
    )
    model.add_argument("--api-key", help="bearer key for --sglang-url/--openai-url [APP_API_KEY]")
    model.add_argument(
        "--device", default="auto", help="local backend: auto, cpu, cuda, cuda:N, mps [APP_DEVICE]"
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host",
        default=default_host(env),
        help="bind address (default 127.0.0.1, or 0.0.0.0 when SPACE_ID is set, i.e. on Spaces) [APP_HOST]",
    )
    net.add_argument(
        "--port",
        type=int,
        default=default_port(env),
        help=f"port (default {DEFAULT_PORT} or GRADIO_SERVER_PORT; 0 picks a free one) [APP_PORT]",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb",
        type=int,
        default=20,
        help="largest uploaded file in MiB (default 20) [APP_MAX_UPLOAD_MB]",
    )
    limits.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="generations running at once; other requests wait in Gradio's queue (default 1: one CPU model "
        "answers one question at a time) [APP_CONCURRENCY]",
    )
    extras = parser.add_argument_group("extras")
    extras.add_argument(
        "--feedback-log",
        type=_parse_optional_path,
        default=DEFAULT_FEEDBACK_LOG,
        help="JSONL file for like/dislike clicks; '' turns feedback off (default runs/app/feedback.jsonl) "
        "[APP_FEEDBACK_LOG]",
    )
    extras.add_argument(
        "--examples",
        type=_parse_optional_path,
        default=None,
        help="examples.json (scene images + questions); default: the one the SynthWorld recipe wrote under "
        "assets/ [APP_EXAMPLES]",
    )
    extras.add_argument(
        "--stream-delay-ms",
        type=int,
        default=0,
        help="pause between streamed chunks, for demos and UI tests of Stop (default 0) [APP_STREAM_DELAY_MS]",
    )
    extras.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="do not load the model before serving (it loads on the first question) [APP_PRELOAD=0]",
    )
    add_explorer_arguments(parser)
    add_launcher_arguments(parser)
    parser.set_defaults(**env_defaults(env))
    return parser


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    """Turn parsed flags into each tab's settings (``SettingsError`` names the flag)."""
    if args.sglang_url and args.openai_url:
        raise SettingsError("give --sglang-url or --openai-url, not both")
    backend = args.backend
    if backend == "local" and (args.sglang_url or args.launch_sglang):
        backend = "sglang"  # asking for SGLang is unambiguous; don't make people also type --backend
    elif backend == "local" and args.openai_url:
        backend = "openai"
    try:
        explorer = explorer_config_from_args(args)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    chat = ChatSettings(
        backend=backend,
        model=args.model,
        server_url=args.sglang_url or args.openai_url,
        launch_sglang=args.launch_sglang,
        api_key=args.api_key,
        device=args.device,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        concurrency=args.concurrency,
        feedback_log=args.feedback_log,
        examples_file=args.examples,
        stream_delay_ms=args.stream_delay_ms,
        preload=args.preload,
    )
    launcher = launcher_settings_from_args(args, loopback_only=chat.loopback_only)
    if launcher.enabled and launcher.workspace.resolve() not in {p.resolve() for p in chat.checkpoint_roots}:
        # "train -> serve": a finished LLaVA job's model shows in the chat's selector (Refresh), no restart.
        chat = replace(chat, checkpoint_roots=(*chat.checkpoint_roots, launcher.workspace))
    if launcher.enabled:
        # "customize -> re-index -> retrieve": an index-build job's index shows in the explorer (Refresh).
        explorer = replace(explorer, job_workspace=launcher.workspace)
    return AppSettings(chat=chat, explorer=explorer, launcher=launcher)


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> AppSettings:
    """Flags + environment -> settings; exits with status 2 and a one-line message on bad input."""
    try:
        parser = build_parser(environ)
    except SettingsError as exc:  # a bad APP_* variable: say which, without a traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    args = parser.parse_args(argv)
    try:
        return settings_from_args(args)
    except SettingsError as exc:
        parser.exit(2, f"error: {exc}\n")
    raise AssertionError("unreachable")  # parser.exit raises SystemExit
