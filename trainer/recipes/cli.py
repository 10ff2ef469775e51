"""``python -m trainer.recipe {synthworld,synthworld-llava}``: the command line over both recipes.

Both recipes share ``trainer.recipes.foundation``'s step machinery; this module is the only one that knows both.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from trainer.recipes.foundation import RecipeConfig, run_recipe
from trainer.recipes.llava import LlavaRecipeConfig, run_llava_recipe
from vision_common.cli_help import HelpFormatter
from vision_common.paths import PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.recipe",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "recipe",
        choices=["synthworld", "synthworld-llava"],
        help="synthworld: world + foundation models; synthworld-llava: the embedded LLaVA-NeXT",
    )
    parser.add_argument("--reduced", action="store_true", help="tiny presets, seconds (the CI variant)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (defaults: assets/synthworld, assets/models/synthworld-llava-next; "
        "--reduced and --no-anyres write under .cache/)",
    )
    parser.add_argument(
        "--world", type=Path, default=None, help="world folder (default: .cache/synthworld/...)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-anyres", action="store_true", help="synthworld-llava only: base tile only (the ablation)"
    )
    parser.add_argument(
        "--foundation",
        type=Path,
        default=None,
        help="synthworld-llava only: foundation assets folder (default: assets/synthworld, reduced: "
        ".cache/assets-reduced)",
    )
    parser.add_argument(
        "--world-preset",
        choices=["default", "simple"],
        default=None,
        help="synthworld-llava only: the world the chat model trains and is evaluated on (default: simple, "
        "1-2 larger objects per scene, issue #18's preset; default: the full world; docs/recipe.md)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="synthworld-llava only: folder for intermediates; the build resumes there by step after an "
        "interruption (default: .cache/recipe-work/llava-<world preset>-seed<seed>, shared with the --no-anyres "
        "ablation; --reduced: a temporary folder)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="synthworld-llava only: discard --work's earlier steps first"
    )
    parser.add_argument(
        "--stage1-steps", type=int, default=None, help="synthworld-llava: override stage-1 updates"
    )
    parser.add_argument(
        "--stage2-steps", type=int, default=None, help="synthworld-llava: override stage-2 updates"
    )
    parser.add_argument(
        "--drill-steps",
        type=int,
        default=None,
        help="synthworld-llava: override the drill's updates (0: no drill)",
    )
    parser.add_argument(
        "--anyres-steps",
        type=int,
        default=None,
        help="synthworld-llava: override the last (AnyRes) stage's updates",
    )
    args = parser.parse_args(argv)
    if args.recipe == "synthworld-llava":
        return _main_llava(args)
    if args.no_anyres or args.work or args.fresh:
        parser.error("--no-anyres, --work and --fresh apply to the synthworld-llava recipe")
    base = RecipeConfig.reduced() if args.reduced else RecipeConfig.full()
    cfg = RecipeConfig(**{**asdict(base), "seed": args.seed})
    out = args.out or (PROJECT_ROOT / (".cache/assets-reduced" if args.reduced else "assets/synthworld"))
    manifest = run_recipe(cfg, out, world=args.world)
    _report(manifest, out)
    return 0


def _main_llava(args: argparse.Namespace) -> int:
    base = LlavaRecipeConfig.reduced() if args.reduced else LlavaRecipeConfig.full()
    overrides: dict[str, object] = {"seed": args.seed, "anyres_grids": "1x1" if args.no_anyres else None}
    if args.world_preset:
        overrides["world_preset"] = args.world_preset
    if args.foundation:
        overrides["foundation"] = str(args.foundation.resolve())
    for key in ("stage1_steps", "stage2_steps", "drill_steps", "anyres_steps"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    cfg = LlavaRecipeConfig(**{**asdict(base), **overrides})
    if args.out:
        out = args.out
    elif args.reduced:
        out = PROJECT_ROOT / ".cache" / ("llava-reduced-no-anyres" if args.no_anyres else "llava-reduced")
    elif args.no_anyres:
        out = PROJECT_ROOT / ".cache" / "synthworld-llava-next-no-anyres"
    else:
        out = PROJECT_ROOT / "assets" / "models" / "synthworld-llava-next"
    work = args.work
    if work is None and not args.reduced:
        # One folder per world and seed: the --no-anyres ablation reuses the main build's stages before the last.
        work = PROJECT_ROOT / ".cache" / "recipe-work" / f"llava-{cfg.world_preset}-seed{cfg.seed}"
    if args.fresh and work is not None and work.exists():
        shutil.rmtree(work)
    _report(run_llava_recipe(cfg, out, work), out)
    return 0


def _report(manifest: dict, out: Path) -> None:
    print(
        f"\n[recipe] wrote {len(manifest['files'])} files, {manifest['total_bytes'] / 1e6:.1f} MB to {out} "
        f"in {manifest['recipe']['total_seconds']:.0f} s"
    )
    print(json.dumps(manifest["metrics"], indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
