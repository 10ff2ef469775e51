"""Training text for the tokenizer and the tiny LM, read from a SynthWorld world and LLaVA conversation files.

Sources, in this fixed order (so every run sees the same documents in the same order):

1. ``scenes/annotations/captions_train.json``: COCO captions of the training scenes, one document per caption,
   ordered by (image_id, annotation id). Test-split captions are never read: they describe held-out scenes.
2. ``pool/pool.parquet``: the web-pool captions, one document per row, ordered by key.
3. Optional LLaVA conversation JSON files (the instruction data), each record rendered in the ``vicuna_v1``
   chat layout the LLaVA stage uses, so the LM has seen the format before fine-tuning.

Evaluation files (``eval/*.jsonl``, ``tasks/``) and ``pool_truth.parquet`` are never training text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.foundation.special_tokens import EOS_TOKEN, VICUNA_SYSTEM

CAPTIONS_FILE = Path("scenes") / "annotations" / "captions_train.json"
POOL_FILE = Path("pool") / "pool.parquet"


class CorpusError(ValueError):
    """A corpus source is missing or malformed; the message names the file and the record."""


@dataclass(frozen=True)
class Document:
    """One training document: its text and where it came from (``source`` names the file)."""

    source: str
    text: str


def render_vicuna_v1(conversations: Sequence[dict[str, Any]], *, where: str) -> str:
    """Render LLaVA ``{"from", "value"}`` turns exactly as the tokenizer's chat template renders them.

    Kept in Python because the corpus feeds tokenizer training, before any tokenizer exists; a test pins
    it to the Jinja template (``VICUNA_V1_CHAT_TEMPLATE``) so the two cannot drift.
    """
    parts = [VICUNA_SYSTEM, " "]
    for position, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise CorpusError(f"{where}: conversations[{position}] must be an object with 'from' and 'value'")
        speaker, value = turn.get("from"), turn.get("value")
        if not isinstance(value, str):
            raise CorpusError(f"{where}: conversations[{position}].value must be a string, got {value!r}")
        if speaker == "human":
            parts += ["USER: ", value, " "]
        elif speaker == "gpt":
            parts += ["ASSISTANT: ", value, EOS_TOKEN]
        else:
            raise CorpusError(
                f"{where}: conversations[{position}].from must be 'human' or 'gpt', got {speaker!r}"
            )
    return "".join(parts)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise CorpusError(f"{path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path} is not valid JSON: {exc}") from exc


def iter_coco_captions(path: Path) -> Iterator[Document]:
    """Captions of a COCO captions file, ordered by (image_id, annotation id)."""
    data = _read_json(path)
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise CorpusError(f"{path}: expected a COCO captions object with an 'annotations' list")
    rows = []
    for index, ann in enumerate(annotations):
        caption = ann.get("caption") if isinstance(ann, dict) else None
        if not isinstance(caption, str):
            raise CorpusError(f"{path}: annotations[{index}].caption must be a string")
        rows.append((ann.get("image_id", 0), ann.get("id", index), caption.strip()))
    rows.sort(key=lambda row: (_order_key(row[0]), _order_key(row[1])))
    for _, _, caption in rows:
        if caption:
            yield Document(str(path.name), caption)


def _order_key(value: Any) -> tuple[int, int, str]:
    # COCO ids are ints, but other exporters write strings; mixed ids must still sort without a TypeError.
    if isinstance(value, int):
        return (0, value, "")
    return (1, 0, str(value))


def iter_pool_captions(path: Path) -> Iterator[Document]:
    """Captions of a LAION-style pool parquet, ordered by key."""
    import pyarrow.parquet as pq  # local import: only this reader needs pyarrow

    if not path.is_file():
        raise CorpusError(f"{path} does not exist")
    try:
        table = pq.read_table(path, columns=["key", "caption"])
    except (OSError, ValueError, KeyError) as exc:
        raise CorpusError(f"{path}: cannot read columns 'key' and 'caption': {exc}") from exc
    keys = table.column("key").to_pylist()
    captions = table.column("caption").to_pylist()
    for _key, caption in sorted(zip(keys, captions), key=lambda kc: str(kc[0])):
        if isinstance(caption, str) and caption.strip():
            yield Document(str(path.name), caption.strip())


def iter_conversations(path: Path) -> Iterator[Document]:
    """LLaVA conversation records (a JSON list), each rendered as one vicuna_v1 document, in file order."""
    records = _read_json(path)
    if not isinstance(records, list):
        raise CorpusError(f"{path}: expected a JSON list of LLaVA conversation records")
    for index, record in enumerate(records):
        where = f"{path} record #{index}"
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            where = f"{path} record {record['id']!r}"
        turns = record.get("conversations") if isinstance(record, dict) else None
        if not isinstance(turns, list) or not turns:
            raise CorpusError(f"{where}: field 'conversations' must be a non-empty list")
        yield Document(str(path.name), render_vicuna_v1(turns, where=where))


def iter_world_documents(
    world: str | os.PathLike[str] | None,
    conversation_files: Sequence[str | os.PathLike[str]] = (),
    *,
    include_pool: bool = True,
) -> Iterator[Document]:
    """All training documents, in the fixed order described in the module docstring."""
    if world is not None:
        root = Path(world)
        if not root.is_dir():
            raise CorpusError(f"world directory {root} does not exist")
        yield from iter_coco_captions(root / CAPTIONS_FILE)
        if include_pool:
            yield from iter_pool_captions(root / POOL_FILE)
    for conv_path in conversation_files:
        yield from iter_conversations(Path(conv_path))
