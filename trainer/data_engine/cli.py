"""Command line: ``python -m trainer.data_engine build ...`` and ``python -m trainer.data_engine validate ...``.

Examples::

    python -m trainer.data_engine build --captions ann/captions_train.json --instances ann/instances_train.json \\
        --images images/train --out data/llava_instruct.json --stage1-out data/llava_stage1.json
    python -m trainer.data_engine build ... --teacher llm --endpoint http://127.0.0.1:30000 --model default
    python -m trainer.data_engine validate data/llava_instruct.json
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from trainer.data_engine.academic import AcademicConfig
from trainer.data_engine.build import (
    ALL_TYPES,
    BuildConfig,
    build_records,
    build_stage1_records,
    check_output_writable,
)
from trainer.data_engine.coco import CocoFormatError, load_coco, read_json
from trainer.data_engine.llm_client import LLMClientConfig, LLMEndpointError
from trainer.data_engine.llm_teacher import LLMTeacher
from trainer.data_engine.rule_teacher import RuleTeacher
from trainer.data_engine.schema import RecordError, validate_records
from trainer.data_engine.teachers import Teacher
from vision_common.atomic import OutputNotWritableError, atomic_write_json
from vision_common.cli_help import HelpFormatter


def _types(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _fractions(text: str) -> dict[str, float]:
    """'detail=0.3,conversation=0.5' -> {'detail': 0.3, 'conversation': 0.5}; argparse reports a ValueError."""
    out: dict[str, float] = {}
    for part in _types(text):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected TYPE=FRACTION, got {part!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected TYPE=FRACTION, got {part!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.data_engine",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="generate LLaVA instruction data from COCO-format annotations",
        formatter_class=HelpFormatter,
    )
    build.add_argument("--captions", type=Path, required=True, help="COCO captions JSON")
    build.add_argument(
        "--instances", type=Path, required=True, help="COCO instances JSON (boxes, categories)"
    )
    build.add_argument(
        "--images", type=Path, required=True, help="image folder; record paths are relative to it"
    )
    build.add_argument("--out", type=Path, required=True, help="output LLaVA conversation JSON (stage 2)")
    build.add_argument("--stage1-out", type=Path, help="also write stage-1 caption data here")
    build.add_argument("--teacher", choices=("rule", "llm"), default="rule", help="who writes conversations")
    build.add_argument(
        "--types", type=_types, default=ALL_TYPES, help=f"comma list from {','.join(ALL_TYPES)}"
    )
    build.add_argument(
        "--fractions",
        type=_fractions,
        default={},
        help="share of images that get each type, e.g. 'detail=0.3,conversation=0.3' (default: every image)",
    )
    academic = build.add_argument_group("academic VQA records (type 'academic'; turns per image)")
    academic.add_argument("--academic-short", type=int, default=AcademicConfig.short_turns)
    academic.add_argument(
        "--academic-yes-no-pairs", type=int, default=AcademicConfig.yes_no_pairs, help="yes + no probe pairs"
    )
    academic.add_argument(
        "--academic-detail", type=int, default=AcademicConfig.detail_turns, help="small-detail (large scenes)"
    )
    academic.add_argument("--academic-mc", type=int, default=AcademicConfig.mc_turns, help="multiple choice")
    academic.add_argument(
        "--academic-repeats", type=int, default=AcademicConfig.repeats, help="records per image (a drill)"
    )
    academic.add_argument(
        "--academic-keep",
        type=_fractions,
        default={},
        help="keep probability per short-answer category, e.g. 'count=0.25,text=0.3' (default: keep all)",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--limit", type=int, help="use only the first N images")
    build.add_argument(
        "--workers", type=int, default=1, help="concurrent teacher calls (useful with --teacher llm)"
    )
    llm = build.add_argument_group("LLM teacher (any OpenAI-compatible /v1/chat/completions endpoint)")
    llm.add_argument(
        "--endpoint", help="server URL, e.g. http://127.0.0.1:30000 or https://api.openai.com/v1"
    )
    llm.add_argument("--model", default="default", help="served model name (SGLang serves 'default')")
    llm.add_argument(
        "--api-key", default=os.environ.get("OPENAI_API_KEY"), help="defaults to $OPENAI_API_KEY"
    )
    llm.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    llm.add_argument("--retries", type=int, default=4, help="retries on 5xx/429/connection errors")
    llm.add_argument("--temperature", type=float, default=0.7)
    llm.add_argument("--max-tokens", type=int, default=1024)
    validate = commands.add_parser(
        "validate", help="check an existing LLaVA conversation JSON", formatter_class=HelpFormatter
    )
    validate.add_argument("path", type=Path)
    return parser


def _make_teacher(args: argparse.Namespace) -> Teacher:
    if args.teacher == "rule":
        return RuleTeacher()
    if not args.endpoint:
        raise ValueError("--teacher llm needs --endpoint")
    config = LLMClientConfig(
        endpoint=args.endpoint,
        model=args.model,
        api_key=args.api_key,
        timeout_s=args.timeout,
        max_retries=args.retries,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
    )
    return LLMTeacher(config)


def run_build(args: argparse.Namespace) -> int:
    academic = AcademicConfig(
        short_turns=args.academic_short,
        yes_no_pairs=args.academic_yes_no_pairs,
        detail_turns=args.academic_detail,
        mc_turns=args.academic_mc,
        repeats=args.academic_repeats,
        keep=args.academic_keep,
    )
    config = BuildConfig(
        types=args.types,
        seed=args.seed,
        limit=args.limit,
        workers=args.workers,
        academic=academic,
        fractions=args.fractions,
    )
    check_output_writable(args.out)
    if args.stage1_out:
        check_output_writable(args.stage1_out)
    teacher = _make_teacher(args)
    dataset = load_coco(args.captions, args.instances, args.images, limit=config.limit)
    try:
        records, stats = build_records(dataset, teacher, config)
    finally:
        if isinstance(teacher, LLMTeacher):
            teacher.close()
    atomic_write_json(args.out, records)
    print(f"wrote {len(records)} records to {args.out}")
    print(stats.summary())
    if args.stage1_out:
        stage1, stage1_stats = build_stage1_records(dataset, config.seed)
        atomic_write_json(args.stage1_out, stage1)
        print(f"wrote {len(stage1)} stage-1 caption records to {args.stage1_out}")
        print(stage1_stats.summary())
    return 0


def run_validate(args: argparse.Namespace) -> int:
    records = read_json(args.path, "conversation")
    if not isinstance(records, list):
        raise RecordError(f"{args.path}: top level must be a list of records")
    print(f"{args.path}: {validate_records(records)} valid records")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_build(args) if args.command == "build" else run_validate(args)
    except (CocoFormatError, RecordError, LLMEndpointError, OutputNotWritableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
