"""``python app.py``: the Steerable visual intelligence app (Gradio), one tab per pillar; today the visual chat.

    python app.py                                   # embedded SynthWorld model, http://127.0.0.1:7860
    python app.py --model runs/s2/final             # a checkpoint you trained
    python app.py --sglang-url http://gpu:30000     # answers from an SGLang server
    python app.py --help                            # every flag and its APP_* environment variable

Offline by design: analytics off, no share link, no downloads at start-up (docs/app.md).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from app_shell.args import parse_settings
from vision_common.logging_setup import configure_logging

EXIT_STARTUP_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)  # --help and bad flags answer before Gradio is imported
    configure_logging(logging.INFO)  # our INFO lines, third-party chatter (faiss, httpx) at WARNING
    log = logging.getLogger("app")
    if not settings.chat.loopback_only:
        log.warning(
            "listening on %s: anyone who can reach port %d can use the app",
            settings.chat.host,
            settings.chat.port,
        )
    # Imported after the flags are parsed: the shell imports Gradio and every tab (seconds on two cores).
    from app_shell.shell import TabLoadError, build_app, close_tabs, launch, make_tabs, run_startup

    try:
        tabs = make_tabs(settings)
        run_startup(tabs)
        demo = build_app(settings, tabs)
    except TabLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    try:
        launch(demo, settings, tabs, block=True)
    finally:
        close_tabs(tabs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
