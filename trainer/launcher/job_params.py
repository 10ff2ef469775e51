"""The parameter dataclasses of the launcher's job types: one typed field per value the tab's form and the API
accept, each with its help text.

Convention (read by ``form_spec.field_help`` and checked by a test for every registered type): the help of a
field is the string literal right under it (an attribute docstring, as litgpt's configs do). Types decide the
form's component and its validation (``param_types``): ``int`` / ``float`` a number box (``| None``: empty
means "the trainer preset's own"; bounds from ``Annotated[..., Range(lo, hi)]``, else ``DEFAULT_RANGE``),
``bool`` a checkbox, ``Literal[...]`` a drop-down (validated against the same choices), ``str`` a text box.
Input paths are relative to the project root, or absolute inside the workspace (another job's result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number field (``Annotated[float, Range(0, 1)]``); the validation refuses values
    outside them and the form's number box carries them. Unannotated numbers get ``DEFAULT_RANGE``."""

    minimum: float
    maximum: float


# Every count and rate a job takes is non-negative; the cap keeps a typo (1e12 steps) from queueing forever.
DEFAULT_RANGE = Range(0, 10**9)

EMBEDDED_LLAVA = "assets/models/synthworld-llava-next"
EMBEDDED_MODELS = "assets/synthworld/models"

# Mirrors ``trainer.llava.config.PRESETS``, ``trainer.react.config.PRESETS`` and ``STRATEGIES`` (a test keeps
# them equal); spelt out so the launcher's form does not import the trainers.
LlavaConfig = Literal["tiny", "synthworld", "llava_1_5_7b", "llava_next_7b"]
ReactPreset = Literal["tiny", "synthworld", "vit-b-32"]
ReactStrategy = Literal["gated-image", "locked-text", "locked-image", "full"]


@dataclass(frozen=True)
class LlavaTrainParams:
    """One LLaVA stage (``python -m trainer.llava.train``)."""

    config: LlavaConfig = "tiny"
    """Trainer preset: tiny (tests, seconds), synthworld (the embedded model's recipe), llava_1_5_7b, llava_next_7b."""
    data: str = ""
    """LLaVA conversation JSON (stage 1: captions, stage 2: instructions)."""
    images: str = ""
    """Folder the records' image paths are relative to."""
    init: str = ""
    """LLaVA-NeXT folder to start from (stage 2: a stage-1 result; empty: build from the parts below)."""
    vision_tower: str = ""
    """Transformers CLIP vision tower folder (when not starting from an LLaVA-NeXT folder)."""
    language_model: str = ""
    """Transformers causal LM folder (when not starting from an LLaVA-NeXT folder)."""
    tokenizer: str = ""
    """Tokenizer folder (empty: the language model's)."""
    max_steps: int | None = None
    """Optimizer updates (empty: the trainer preset's)."""
    checkpoint_every: int | None = None
    """Checkpoint every N updates, 0: at the end only (empty: the trainer preset's)."""
    micro_batch_size: int | None = None
    """Samples per micro-batch (empty: the trainer preset's)."""
    processes: Annotated[int, Range(1, 64)] = 1
    """Training processes, one per GPU (above 1: ``accelerate launch`` with DDP; the global batch grows)."""


@dataclass(frozen=True)
class DataEngineParams:
    """LLaVA instruction data from COCO-format annotations (``python -m trainer.data_engine build``)."""

    captions: str = ""
    """COCO captions JSON."""
    instances: str = ""
    """COCO instances JSON (boxes, categories)."""
    images: str = ""
    """Image folder; the records' paths are relative to it."""
    types: str = "conversation,detail,complex"
    """Comma list of record types: conversation, detail, complex, short, mc, academic."""
    limit: int | None = None
    """Use only the first N images (empty: all)."""
    seed: int = 0
    """Random seed of the generated conversations."""


@dataclass(frozen=True)
class IndexBuildParams:
    """A CLIP + FAISS index over a pool (``python -m react_explorer.build_index``)."""

    pool: str = ""
    """Pool parquet, image folder, or embeddings folder."""
    model: str = f"{EMBEDDED_MODELS}/synthworld-clip"
    """open_clip model folder that embeds the pool (a react-customize job's final/ re-indexes with it)."""
    batch_size: int = 256
    """Embedding batch size."""


@dataclass(frozen=True)
class LlavaEvalParams:
    """Held-out SynthWorld scores of a chat model (``python -m trainer.eval llava``)."""

    model: str = EMBEDDED_LLAVA
    """LLaVA-NeXT model folder (an LLaVA job's final/)."""
    world: str = ".cache/synthworld/default-seed0"
    """SynthWorld folder whose held-out question sets are asked."""
    limit: int = 60
    """Questions per set (60: the 2-minute budget)."""


@dataclass(frozen=True)
class RecipeParams:
    """One of the recipes that rebuild the committed models (``python -m trainer.recipe``)."""

    reduced: bool = True
    """The reduced recipe (tiny presets, about a minute); off: the full build (tens of minutes)."""
    seed: int = 0
    """Seed of every random choice in the recipe."""


@dataclass(frozen=True)
class ReactCustomizeParams:
    """REACT customization of a CLIP on a retrieved subset (``python -m trainer.react train``)."""

    subset: str = ""
    """The explorer's exported parquet subset (or the retrieve CLI's output)."""
    base: str = f"{EMBEDDED_MODELS}/synthworld-clip"
    """open_clip model folder to customize."""
    config: ReactPreset = "synthworld"
    """trainer.react preset: tiny (tests), synthworld (the embedded CLIP, minutes), vit-b-32 (GPU)."""
    strategy: ReactStrategy = "gated-image"
    """What trains: gated-image (REACT's gated blocks only), locked-text, locked-image (LiT), full."""
    max_steps: int | None = None
    """Optimizer updates (empty: the preset's)."""
    gamma: Annotated[float, Range(0, 1)] = 0.9
    """Pairs whose text cosine is at least gamma count as positives of the contrastive loss."""
    classes: str = ""
    """The retrieval's class names (comma-separated): the zero-shot before/after scores only these classes."""
    eval_task: str = ""
    """A labelled task (SynthWorld task folder or ImageFolder) scored zero-shot before and after into
    zeroshot.json (empty: no scores)."""
    pool: str = ""
    """The pool the subset was retrieved from; training does not read it: "Re-index the pool with this CLIP"
    embeds it with the result."""
    processes: Annotated[int, Range(1, 64)] = 1
    """Training processes, one per GPU (above 1: ``accelerate launch`` with DDP; the global batch grows)."""


@dataclass(frozen=True)
class ReactEvalParams:
    """Zero-shot top-1/top-5 before/after (``python -m trainer.react eval``)."""

    model: str = ""
    """The customized model folder (a react-customize job's final/)."""
    baseline: str = f"{EMBEDDED_MODELS}/synthworld-clip"
    """The model before customization (the "before" column)."""
    task: str = ".cache/synthworld/default-seed0/tasks/species"
    """SynthWorld task folder or ImageFolder whose classes are scored."""
    classes: str = ""
    """Comma-separated class names: score only these classes of the task (empty: all)."""
