"""One ``--help`` style for every command-line program: descriptions kept as written, defaults listed."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Appends "(default: ...)" to each option's help, unless the help already says what the default is, and
    keeps the description's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "default" in help_text.lower():
            return help_text
        return super()._get_help_string(action)
