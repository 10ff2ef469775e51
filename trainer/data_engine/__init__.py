"""The instruction-data engine: LLaVA's GPT-assisted data pipeline (LLaVA Sec. 3.3), offline-first.

COCO-format captions + boxes -> symbolic context -> a teacher (rule-based, or any OpenAI-compatible LLM) ->
LLaVA conversation JSON (conversation / detail / complex_reasoning), plus short-answer and multiple-choice VQA
records from the questions module and stage-1 caption data. See docs/data_engine.md.
"""

from __future__ import annotations

from trainer.data_engine.build import (
    ALL_TYPES,
    BuildConfig,
    Stats,
    build_instruction_data,
    build_records,
    build_stage1_data,
    build_stage1_records,
)
from trainer.data_engine.coco import CocoDataset, CocoFormatError, CocoImage, find_coco_files, load_coco
from trainer.data_engine.llm_client import LLMClientConfig, LLMEndpointError
from trainer.data_engine.llm_teacher import LLMTeacher
from trainer.data_engine.rule_teacher import RuleTeacher
from trainer.data_engine.schema import RecordError, make_record, validate_record, validate_records
from trainer.data_engine.teachers import (
    Conversation,
    ResponseType,
    Teacher,
    TeacherContext,
    TeacherOutput,
    Turn,
)

__all__ = [
    "ALL_TYPES",
    "BuildConfig",
    "CocoDataset",
    "CocoFormatError",
    "CocoImage",
    "Conversation",
    "LLMClientConfig",
    "LLMEndpointError",
    "LLMTeacher",
    "RecordError",
    "ResponseType",
    "RuleTeacher",
    "Stats",
    "Teacher",
    "TeacherContext",
    "TeacherOutput",
    "Turn",
    "build_instruction_data",
    "build_records",
    "build_stage1_data",
    "build_stage1_records",
    "find_coco_files",
    "load_coco",
    "make_record",
    "validate_record",
    "validate_records",
]
