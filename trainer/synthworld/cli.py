"""Command line: ``python -m trainer.synthworld generate --out DIR [--seed 0] [--preset tiny|default]``
and ``python -m trainer.synthworld preview --world DIR --out sheet.png``."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

from trainer.synthworld.config import PRESETS, WorldConfig
from trainer.synthworld.preview import contact_sheet
from trainer.synthworld.world import generate_world
from vision_common.atomic import OutputNotWritableError, atomic_write_bytes
from vision_common.cli_help import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.synthworld", description=__doc__, formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate",
        help="generate a world into a directory (replaced atomically)",
        formatter_class=HelpFormatter,
    )
    generate.add_argument("--out", required=True, help="output directory; replaced only when complete")
    generate.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    generate.add_argument("--preset", choices=sorted(PRESETS), default="default", help="world size preset")
    generate.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="render processes (output is identical for any count; default: min(2, CPUs))",
    )
    preview = commands.add_parser(
        "preview", help="write a contact sheet PNG of a generated world", formatter_class=HelpFormatter
    )
    preview.add_argument("--world", required=True, help="a generated world directory")
    preview.add_argument("--out", required=True, help="PNG file to write")
    return parser


def _preview(world: str, out: str) -> int:

    buffer = io.BytesIO()
    contact_sheet(world).save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(out, buffer.getvalue())
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "preview":
        return _preview(args.world, args.out)
    config = WorldConfig.preset(args.preset)
    start = time.perf_counter()
    try:
        manifest = generate_world(args.out, config, seed=args.seed, workers=args.workers)
    except OutputNotWritableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{key}={value}" for key, value in manifest["counts"].items())
    print(f"wrote {args.out} (preset {args.preset}, seed {args.seed}) in {elapsed:.1f} s: {counts}")
    return 0
