"""Start-up logging for the project's programs: our INFO lines, without third-party chatter.

At INFO, faiss' loader logs a ``ModuleNotFoundError`` traceback-like line for every optional SIMD build it does
not find, and httpx logs each of Gradio's own start-up probes; a newcomer reads those as failures (issue 19).
Those loggers are raised to WARNING, so their real problems still show.
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("faiss.loader", "httpx", "httpcore", "urllib3", "PIL", "matplotlib", "asyncio")


def configure_logging(level: int | str = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    quiet_third_party()


def quiet_third_party(level: int = logging.WARNING) -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).level))
