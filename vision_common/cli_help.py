"""One ``--help`` style for every command-line program: descriptions kept as written, defaults listed."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Appends "(default: ...)" to each option's help where there is a default to tell (not for required
    options, unset ones or flags, nor where the help already says it), and keeps the description's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        # Nothing worth saying: a required or unset option, a flag (store_true/false), or help that names it.
        if action.required or action.default is None or action.nargs == 0 or "default" in help_text.lower():
            return help_text
        return super()._get_help_string(action)
