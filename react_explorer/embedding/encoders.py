"""One wrapper over open_clip models: resolve a model spec, load it offline when possible, embed text and images.

Model specs (what ``--model`` / ``--pretrained`` accept):

* ``local-dir:/path`` or a plain directory path holding ``open_clip_config.json``: open_clip's local layout. The
  SynthWorld tiny CLIP (a relative ``hf_tokenizer_name``) goes through ``vision_common.tiny_clip``.
* ``hf-hub:org/repo``: downloaded by open_clip; refused with a clear error while offline.
* an open_clip model name (``ViT-B-32``) with ``pretrained`` = a tag (``laion2b_s34b_b79k``, needs the network)
  or a local checkpoint file (``.pt``/``.safetensors``/``.bin``, loaded with ``weights_only=True`` by open_clip).
* nothing: the SynthWorld tiny CLIP at ``assets/synthworld/models/synthworld-clip`` (written by the recipe).

Every embedding is L2-normalised float32, so inner product = cosine similarity.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from react_explorer.customized.gated_blocks import ReactModelError
from react_explorer.customized.model_dir import has_react_cfg, load_model_dir
from react_explorer.embedding.image_batches import iter_image_batches
from react_explorer.embedding.model_spec import (
    DEFAULT_MODEL_DIR,
    LOCAL_DIR_PREFIX,
    ModelSpec,
    offline_from_env,
)
from react_explorer.errors import EncoderLoadError, MissingImagesError, PoolFormatError
from vision_common.open_clip_dir import (
    OPEN_CLIP_CONFIG_NAME,
    OpenClipDirError,
    load_open_clip_dir,
    local_tokenizer_dir,
)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def load_encoder(spec: ModelSpec, *, device: str = "cpu", offline: bool | None = None) -> ClipEncoder:
    """Load the model behind ``spec`` (eval mode) and wrap it; errors name the spec and say what to do."""
    offline = offline_from_env() if offline is None else offline
    model, preprocess, tokenizer = _load_open_clip(spec, offline)
    return ClipEncoder(model, preprocess, tokenizer, model_id=spec.describe(), device=device)


def _load_open_clip(spec: ModelSpec, offline: bool) -> tuple[Any, Any, Any]:
    import open_clip

    if spec.kind == "local_dir":
        return _load_local_dir(Path(spec.location))
    if spec.kind == "hf_hub":
        if offline:
            raise EncoderLoadError(
                f"model hf-hub:{spec.location} needs a download but HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set; "
                "use a local-dir: copy of the model"
            )
        name = spec.describe()
        return _call_open_clip(
            name, lambda: _create(open_clip, name, None), lambda: open_clip.get_tokenizer(name)
        )
    pretrained = spec.pretrained
    if pretrained is None:
        raise EncoderLoadError(
            f"--model {spec.location}: give --pretrained (an open_clip tag or a checkpoint file); "
            "random weights retrieve nothing meaningful"
        )
    is_file = Path(pretrained).is_file()
    if not is_file and Path(pretrained).suffix in CHECKPOINT_SUFFIXES:
        raise EncoderLoadError(f"checkpoint file {pretrained} not found")
    if not is_file and offline:
        raise EncoderLoadError(
            f"--model {spec.location} --pretrained {pretrained}: the tag needs a download but the hub is offline "
            "(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE); pass a local checkpoint file instead"
        )
    name = spec.location
    if name not in open_clip.list_models():
        raise EncoderLoadError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    return _call_open_clip(
        spec.describe(), lambda: _create(open_clip, name, pretrained), lambda: open_clip.get_tokenizer(name)
    )


def _create(open_clip: Any, name: str, pretrained: str | None) -> tuple[Any, Any]:
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    return model, preprocess


def _call_open_clip(what: str, create: Callable[[], tuple[Any, Any]], tokenizer: Callable[[], Any]) -> tuple:
    try:
        model, preprocess = create()
        return model, preprocess, tokenizer()
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise EncoderLoadError(f"cannot load CLIP model {what}: {exc}") from exc


def _load_local_dir(root: Path) -> tuple[Any, Any, Any]:
    config_file = root / OPEN_CLIP_CONFIG_NAME
    if not config_file.is_file():
        hint = (
            " (the SynthWorld tiny CLIP is written there by the recipe; or pass --model)"
            if root == DEFAULT_MODEL_DIR
            else ""
        )
        raise EncoderLoadError(f"model directory {root} has no {OPEN_CLIP_CONFIG_NAME}{hint}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EncoderLoadError(f"{config_file} is not valid JSON: {exc}") from exc
    if has_react_cfg(root):
        # A REACT-customized CLIP (gated blocks): plain open_clip cannot build it, react_explorer.customized can.
        try:
            bundle = load_model_dir(root)
        except ReactModelError as exc:
            raise EncoderLoadError(f"cannot load customized CLIP {root}: {exc}") from exc
        return bundle.model, bundle.preprocess, bundle.tokenizer
    try:
        # A tokenizer stored next to the weights (the SynthWorld tiny CLIP): open_clip alone would look it up on
        # the hub, the project's loader resolves it relative to the directory.
        if local_tokenizer_dir(root, config.get("model_cfg") or {}) is not None:
            return load_open_clip_dir(root)
    except OpenClipDirError as exc:
        raise EncoderLoadError(str(exc)) from exc
    import open_clip

    name = f"{LOCAL_DIR_PREFIX}{root}"
    return _call_open_clip(
        name, lambda: _create(open_clip, name, None), lambda: open_clip.get_tokenizer(name)
    )


class ClipEncoder:
    """Batched, normalised text and image embedding with one open_clip model (no gradients, eval mode)."""

    def __init__(
        self, model: Any, preprocess: Callable, tokenizer: Any, *, model_id: str, device: str = "cpu"
    ):
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.device = torch.device(device)
        self.dim = int(self.embed_texts(["a"]).shape[1])

    @torch.inference_mode()
    def iter_text_embeddings(
        self, texts: Sequence[str], *, batch_size: int = 256, progress: bool = False
    ) -> Iterator[np.ndarray]:
        """[B, D] float32 unit vectors per batch of texts, in order."""
        _check_batch_size(batch_size)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="embed text", unit="batch", disable=not progress):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            yield _to_numpy(self.model.encode_text(tokens, normalize=True))

    def embed_texts(
        self, texts: Sequence[str], *, batch_size: int = 256, progress: bool = False
    ) -> np.ndarray:
        if not texts:
            raise ValueError("embed_texts: no texts given")
        return np.concatenate(
            list(self.iter_text_embeddings(texts, batch_size=batch_size, progress=progress))
        )

    @torch.inference_mode()
    def embed_pil_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """[N, D] unit vectors for in-memory images (query images, uploads)."""
        if not images:
            raise ValueError("embed_pil_images: no images given")
        pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in images]).to(self.device)
        return _to_numpy(self.model.encode_image(pixels, normalize=True))

    @torch.inference_mode()
    def iter_image_file_embeddings(
        self,
        paths: Sequence[Path],
        *,
        batch_size: int = 256,
        num_workers: int = 2,
        progress: bool = False,
        row_names: Sequence[str] | None = None,
    ) -> Iterator[np.ndarray]:
        """[B, D] unit vectors per batch of image files; decoding runs in ``num_workers`` DataLoader workers.

        Every file must exist (checked before any work); an undecodable file raises naming its row.
        """
        _check_batch_size(batch_size)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        check_image_files(paths, row_names)
        batches = iter_image_batches(paths, self.preprocess, batch_size=batch_size, num_workers=num_workers)
        with tqdm(total=len(paths), desc="embed images", unit="img", disable=not progress) as bar:
            for batch in batches:
                for offset, error in enumerate(batch.errors):
                    if error:
                        row = batch.start + offset
                        name = row_names[row] if row_names is not None else f"row {row}"
                        raise PoolFormatError(f"pool {name}: {error}")
                yield _to_numpy(self.model.encode_image(batch.pixels.to(self.device), normalize=True))
                bar.update(len(batch.errors))

    def embed_image_files(self, paths: Sequence[Path], **kwargs: Any) -> np.ndarray:
        if not paths:
            raise ValueError("embed_image_files: no paths given")
        return np.concatenate(list(self.iter_image_file_embeddings(paths, **kwargs)))


def check_image_files(
    paths: Sequence[Path], row_names: Sequence[str] | None = None, *, show: int = 5
) -> None:
    """Raise ``MissingImagesError`` listing how many files are missing and the first few (row and path)."""
    missing = [i for i, path in enumerate(paths) if not Path(path).is_file()]
    if not missing:
        return
    examples = ", ".join(
        f"{row_names[i] if row_names is not None else f'row {i}'}: {paths[i]}" for i in missing[:show]
    )
    raise MissingImagesError(
        f"{len(missing)} of {len(paths)} pool images are missing (first: {examples}); download them first "
        "(img2dataset) or fix image_path"
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


def _to_numpy(features: torch.Tensor) -> np.ndarray:
    return features.detach().float().cpu().numpy().astype(np.float32, copy=False)
