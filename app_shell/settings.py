"""``AppSettings``: what ``python app.py`` was asked for, one record per tab, each owned by its tab's package.

The chat tab's settings also carry the serving facts (bind address, upload cap, concurrency) because the chat
decides with them (custom checkpoints only on loopback, the queue limit of generating events); the shell reads
them from there. No Gradio import: ``--help`` and bad flags answer before Gradio loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llava_demo.ui.settings import ChatSettings
from react_explorer.ui.explorer_config import ExplorerConfig
from trainer.launcher.settings import LauncherSettings


@dataclass(frozen=True)
class AppSettings:
    """Every tab's settings; the serving facts (host, port, upload cap, concurrency) are read from ``chat``."""

    chat: ChatSettings = field(default_factory=ChatSettings)
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    launcher: LauncherSettings = field(default_factory=LauncherSettings)
