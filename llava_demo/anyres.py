"""``python -m llava_demo.anyres --size WxH``: the AnyRes plan (canvas, tile grid, token count) for an image size.

The arithmetic is ``vision_common.anyres.geometry`` (pure functions shared with the trainer); this is its CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from vision_common.anyres.geometry import STRATEGIES, AnyResConfig, parse_pinpoints, parse_size, plan
from vision_common.cli_help import HelpFormatter


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava_demo.anyres",
        description="Show the AnyRes plan (canvas, tile grid, token count) for an image size. "
        "Sizes are WxH; grid is [columns, rows].",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--size", required=True, help="image size WxH, e.g. 640x480")
    parser.add_argument("--tile", type=int, default=336, help="vision tower input size (default 336)")
    parser.add_argument("--patch", type=int, default=14, help="ViT patch size (default 14)")
    parser.add_argument(
        "--pinpoints",
        default=",".join(f"{w}x{h}" for w, h in AnyResConfig().pinpoints),
        help="candidate canvases, comma-separated WxH (default: LLaVA-1.6 %(default)s)",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default="default", help="vision feature selection")
    parser.add_argument("--no-cls", action="store_true", help="vision tower has no CLS token (e.g. SigLIP)")
    parser.add_argument("--json", action="store_true", help="print the full plan as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
        cfg = AnyResConfig(tile=args.tile, patch=args.patch, pinpoints=parse_pinpoints(args.pinpoints))
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2 and the usage line
    result = plan(size, cfg, strategy=args.strategy, has_cls=not args.no_cls)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    best, grid, shape = result.best_resolution, result.grid, result.unpadded_shape
    lines = [
        f"image_size:        {size.width}x{size.height} (WxH)",
        f"best_resolution:   {best.width}x{best.height} (WxH)",
        f"resized_size:      {result.resized_size.width}x{result.resized_size.height} (WxH, before padding)",
        f"grid:              {grid.cols}x{grid.rows} (columns x rows)",
        f"num_tiles:         {result.num_tiles} (+1 base image = {result.num_crops} encoder crops)",
        f"unpadded_shape:    {shape.height}x{shape.width} (feature rows x cols)",
        f"num_image_tokens:  {result.tokens.total} "
        f"(base {result.tokens.base} + grid {result.tokens.grid} + newline {result.tokens.newline})",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
