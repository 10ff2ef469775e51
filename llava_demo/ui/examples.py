"""Chat examples: SynthWorld scenes with questions, from the ``examples.json`` the recipe writes into assets/.

The file is a JSON list of ``{"image": "scene_0.png", "question": "...", "answer": "...", "category": ...}``
records, images relative to the file. A missing file means no examples (the app still starts); a malformed
one is an ``ExamplesError`` naming the file and the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vision_common.paths import PROJECT_ROOT

# The embedded chat model carries examples from the world it was trained on (the LLaVA recipe writes them);
# then the foundation recipe's (assets/synthworld/examples/) and assets/examples/.
EXAMPLE_LOCATIONS = (
    PROJECT_ROOT / "assets" / "models" / "synthworld-llava-next" / "examples" / "examples.json",
    PROJECT_ROOT / "assets" / "synthworld" / "examples" / "examples.json",
    PROJECT_ROOT / "assets" / "examples" / "examples.json",
)
MAX_EXAMPLES = 12


class ExamplesError(ValueError):
    """examples.json is malformed; the message names the file and the record."""


@dataclass(frozen=True)
class ChatExample:
    image: Path
    question: str
    answer: str | None = None


def find_examples_file(candidates: Iterable[Path] = EXAMPLE_LOCATIONS) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)


def load_examples(path: Path, limit: int = MAX_EXAMPLES) -> list[ChatExample]:
    """Read and check ``path``; every image must exist next to it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExamplesError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ExamplesError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(document, list):
        raise ExamplesError(f"{path}: expected a JSON list of examples, got {type(document).__name__}")
    examples = []
    for index, record in enumerate(document[:limit]):
        where = f"{path}: example {index}"
        if not isinstance(record, dict):
            raise ExamplesError(f"{where}: expected an object, got {type(record).__name__}")
        image, question = record.get("image"), record.get("question")
        if not isinstance(image, str) or not image:
            raise ExamplesError(f"{where}: field 'image' must be a file name")
        if not isinstance(question, str) or not question.strip():
            raise ExamplesError(f"{where}: field 'question' must be a non-empty string")
        image_path = (path.parent / image).resolve()
        if not image_path.is_file():
            raise ExamplesError(f"{where}: image {image_path} does not exist")
        answer = record.get("answer")
        examples.append(
            ChatExample(image_path, question.strip(), answer if isinstance(answer, str) else None)
        )
    return examples
