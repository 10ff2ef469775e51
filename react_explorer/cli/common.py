"""What the react_explorer CLIs share: model arguments, byte sizes, and bad input reported as one line."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from react_explorer.errors import ReactExplorerError
from vision_common.atomic import OutputNotWritableError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
EXIT_BAD_INPUT = 2


def parse_bytes(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``1000`` -> bytes (binary units, as clip-retrieval's "4G")."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 4G, 512M, 1000000)")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="open_clip model: local-dir:DIR, a directory, hf-hub:ORG/REPO (online only), or a model name "
        f"with --pretrained; {default_help}",
    )
    parser.add_argument(
        "--pretrained", default=None, help="with a model name: an open_clip tag or a checkpoint file"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device for the CLIP model: auto, cpu, cuda, cuda:1"
    )


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is passed through."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_cli(main: Callable[[], int]) -> int:
    """Run ``main``; bad input (ours, ValueError from configs, unwritable output) -> one line on stderr, exit 2."""
    try:
        return main()
    except (ReactExplorerError, OutputNotWritableError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
