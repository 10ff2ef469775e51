"""``python -m trainer.react train|eval|synthworld``: REACT customization of CLIP (see docs/react_customization.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trainer.react.synthworld import add_synthworld_arguments, run_synthworld
from trainer.react.train import add_train_arguments, run_train
from trainer.react.zeroshot_eval import add_eval_arguments, run_eval


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.react", description=__doc__.split(":")[1].strip()
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(commands.add_parser("train", help="customize a CLIP on a retrieved subset"))
    add_eval_arguments(commands.add_parser("eval", help="zero-shot top-1/top-5 on labelled tasks"))
    add_synthworld_arguments(
        commands.add_parser("synthworld", help="retrieve -> customize -> evaluate on SynthWorld, end to end")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runners = {"train": run_train, "eval": run_eval, "synthworld": run_synthworld}
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
