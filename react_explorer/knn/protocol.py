"""clip-retrieval's ``/knn-service`` and ``/metadata`` request/response shapes over a ``ClipIndex`` (no HTTP here).

Request fields follow ``clip_back.py``: the query is the first of ``text``, ``image`` (base64), ``image_url``,
``embedding_input`` that is given; ``modality`` ("image"/"text") picks the index; ``num_images`` results carry
metadata out of ``num_result_ids`` (default ``num_images``) retrieved; ``deduplicate`` (False on the server)
removes near-duplicates (cosine >= 0.94 over the result vectors, connected components, first kept) and repeated
ids. The safety/violence/aesthetic/mclip fields are accepted and have no effect: there is no such model here.
The response is a list of ``{<metadata columns>, "id", "similarity"}``, metadata only on the first
``num_images`` entries.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from react_explorer.errors import QueryError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.retrieval.algorithms import DEFAULT_DEDUP_THRESHOLD, near_duplicate_keep

QUERY_FIELDS = ("text", "image", "image_url", "embedding_input")
IGNORED_FIELDS = (
    "use_safety_model",
    "use_violence_detector",
    "use_mclip",
    "aesthetic_score",
    "aesthetic_weight",
)
DEFAULT_MAX_RESULT_IDS = 10_000


@dataclass(frozen=True)
class KnnRequest:
    indice_name: str
    modality: str
    query_kind: str  # one of QUERY_FIELDS
    query: Any  # str (text, image_url), bytes (decoded image), or list of floats
    num_images: int
    num_result_ids: int
    deduplicate: bool


def parse_knn_request(body: Any, indices: Mapping[str, ClipIndex], *, max_result_ids: int) -> KnnRequest:
    """Validate a ``/knn-service`` JSON body; every problem is a ``QueryError`` naming the field."""
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object")
    name = _required(body, "indice_name", str)
    if name not in indices:
        raise QueryError(f"unknown indice_name {name!r}; known: {sorted(indices)}")
    modality = _required(body, "modality", str)
    if modality not in ("image", "text"):
        raise QueryError(f"modality must be 'image' or 'text', got {modality!r}")
    if modality not in indices[name].modalities:
        raise QueryError(f"index {name!r} has no {modality} index (has {list(indices[name].modalities)})")
    num_images = _required(body, "num_images", int)
    num_result_ids = body.get("num_result_ids") or num_images
    if not isinstance(num_result_ids, int) or isinstance(num_result_ids, bool):
        raise QueryError(f"num_result_ids must be an int, got {num_result_ids!r}")
    if num_images <= 0 or num_result_ids < num_images or num_result_ids > max_result_ids:
        raise QueryError(
            f"need 0 < num_images <= num_result_ids <= {max_result_ids}, got {num_images} and {num_result_ids}"
        )
    deduplicate = body.get("deduplicate", False)
    if not isinstance(deduplicate, bool):
        raise QueryError(f"deduplicate must be true or false, got {deduplicate!r}")
    for kind in QUERY_FIELDS:
        value = body.get(kind)
        if value not in (None, ""):
            return KnnRequest(
                name, modality, kind, _query_value(kind, value), num_images, num_result_ids, deduplicate
            )
    raise QueryError(f"give one of {QUERY_FIELDS}")


def answer_knn(
    index: ClipIndex,
    request: KnnRequest,
    embed_text: Callable[[str], np.ndarray],
    embed_image: Callable[[Image.Image], np.ndarray],
    fetch_image_url: Callable[[str], bytes],
) -> list[dict[str, Any]]:
    """Search and shape the response (the embedders return [D] unit vectors)."""
    if request.query_kind == "text":
        vector = embed_text(request.query)
    elif request.query_kind in ("image", "image_url"):
        data = request.query if request.query_kind == "image" else fetch_image_url(request.query)
        vector = embed_image(_decode_image(data, request.query_kind))
    else:
        vector = np.asarray(request.query, dtype=np.float32)  # used as is, as clip-retrieval does
    index.check_query_dim(int(vector.shape[-1]), f"the {request.query_kind} query")
    result = index.search(vector.reshape(1, -1), request.num_result_ids, request.modality)
    found = result.ids[0] >= 0
    ids, scores = result.ids[0][found], result.scores[0][found]
    if request.deduplicate and len(ids):
        _, first = np.unique(ids, return_index=True)
        order = np.sort(first)
        ids, scores = ids[order], scores[order]
        keep = near_duplicate_keep(index.vectors(ids, request.modality), DEFAULT_DEDUP_THRESHOLD)
        ids, scores = ids[keep], scores[keep]
    rows = index.rows(ids[: request.num_images])
    response = []
    for position, (row_id, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True)):
        entry = dict(rows[position]) if position < len(rows) else {}
        entry.update(id=row_id, similarity=score)
        response.append(entry)
    return response


def answer_metadata(body: Any, indices: Mapping[str, ClipIndex]) -> list[dict[str, Any]]:
    """``/metadata``: ``{"indice_name", "ids": [...]}`` -> ``[{"id", "metadata": {...}}]``."""
    if not isinstance(body, dict):
        raise QueryError("the request body must be a JSON object")
    name = _required(body, "indice_name", str)
    if name not in indices:
        raise QueryError(f"unknown indice_name {name!r}; known: {sorted(indices)}")
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise QueryError("ids must be a list of ints")
    index = indices[name]
    bad = [i for i in ids if not 0 <= i < index.count]
    if bad:
        raise QueryError(f"ids {bad[:5]} are outside [0, {index.count})")
    return [{"id": i, "metadata": row} for i, row in zip(ids, index.rows(ids), strict=True)]


def _required(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        raise QueryError(f"field {name!r} is required")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise QueryError(f"field {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def _query_value(kind: str, value: Any) -> Any:
    if kind in ("text", "image_url"):
        if not isinstance(value, str):
            raise QueryError(f"{kind} must be a string")
        return value
    if kind == "image":
        if not isinstance(value, str):
            raise QueryError("image must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise QueryError(f"image is not valid base64: {exc}") from exc
    if not isinstance(value, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
    ):
        raise QueryError("embedding_input must be a list of numbers")
    return value


def _decode_image(data: bytes, field: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise QueryError(f"{field} is not a decodable image: {exc}") from exc
