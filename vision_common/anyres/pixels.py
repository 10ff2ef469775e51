"""AnyRes image -> pixel tensors, identical to transformers' LlavaNext image processors, but faster.

``preprocess(image, cfg)`` returns ``pixel_values`` [1 + cols*rows, 3, tile, tile] (base image first, then
the tiles row-major) and ``image_size_hw`` = (height, width), what ``LlavaNextForConditionalGeneration``
expects as one image's ``pixel_values`` / ``image_sizes``.

Two resize backends, each reproducing one transformers 5.x processor:

* ``"torch"`` (default) = ``LlavaNextImageProcessor`` (torchvision backend): torch's native uint8 antialiased
  bicubic kernel, then the fused (x - 255*mean) / (255*std) in float32. Bit-identical in our tests.
* ``"pil"`` = ``LlavaNextImageProcessorPil``: PIL bicubic, then x/255 in float64 -> float32, then
  (x - mean) / std.

The two kernels differ by one uint8 level on a fraction of pixels, which is why there are two backends
rather than one "close enough" path. Speed comes from doing the same arithmetic with fewer copies: one
PIL -> numpy copy (transformers makes two plus a CHW re-pack), and the uint8 resize runs on a zero-copy
channels-last view (HWC memory), which torch's AVX kernel handles several times faster than contiguous
CHW (output is identical). Pre-downscaling before tiling would be faster still but is not allclose, so it
is not done. See docs/anyres.md for measurements.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from vision_common.anyres.geometry import (
    AnyResConfig,
    Box,
    Size,
    content_box,
    resized_size_for_fit,
    select_best_resolution,
)
from vision_common.anyres.image import resize_bicubic, rgb_for_model
from vision_common.clip_constants import CLIP_MEAN, CLIP_STD

RESIZE_BACKENDS = ("torch", "pil")


@dataclass(frozen=True)
class PixelConfig:
    """Normalisation and resize backend; the defaults match llava-hf CLIP checkpoints."""

    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    rescale_factor: float = 1 / 255
    resize_backend: str = "torch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"PixelConfig.mean/std need 3 values (RGB), got {self.mean} / {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"PixelConfig.std must be positive, got {self.std}")
        if self.rescale_factor <= 0:
            raise ValueError(f"PixelConfig.rescale_factor must be positive, got {self.rescale_factor}")
        if self.resize_backend not in RESIZE_BACKENDS:
            raise ValueError(
                f"PixelConfig.resize_backend must be one of {RESIZE_BACKENDS}, got {self.resize_backend!r}"
            )

    @classmethod
    def clip(cls, resize_backend: str = "torch") -> PixelConfig:
        return cls(resize_backend=resize_backend)


@dataclass(frozen=True)
class AnyResPixels:
    pixel_values: torch.Tensor  # [1 + cols*rows, 3, tile, tile] float32, base image first
    image_size_hw: tuple[int, int]  # original (height, width), transformers' ``image_sizes`` order


def _resize_uint8_torch(src_nchw: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """torchvision ``resize`` for uint8 bicubic on CPU: native uint8 antialiased kernel, no-op if same size."""
    if tuple(src_nchw.shape[-2:]) == tuple(size_hw):
        return src_nchw
    return F.interpolate(src_nchw, size=list(size_hw), mode="bicubic", align_corners=False, antialias=True)


def _resized_pair_torch(rgb: PIL.Image.Image, fit: Size, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable NumPy array": we only read it
        hwc = torch.from_numpy(np.asarray(rgb))  # the one copy out of PIL
    src = hwc.permute(2, 0, 1).unsqueeze(0)  # [1, 3, H, W] channels_last view, no copy
    fitted = _resize_uint8_torch(src, (fit.height, fit.width))[0].permute(1, 2, 0)  # [h, w, 3]
    base = _resize_uint8_torch(src, (tile, tile))[0].permute(1, 2, 0)  # [tile, tile, 3]
    return fitted, base


def _resized_pair_pil(rgb: PIL.Image.Image, fit: Size, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    fitted = np.array(resize_bicubic(rgb, fit.width, fit.height))
    return torch.from_numpy(fitted), torch.from_numpy(np.array(resize_bicubic(rgb, tile, tile)))


def _normalize_(values: torch.Tensor, pixel_cfg: PixelConfig) -> torch.Tensor:
    """In place, with the exact float ops of the matching transformers backend."""
    mean = torch.tensor(pixel_cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pixel_cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
    if pixel_cfg.resize_backend == "torch":
        # TorchvisionBackend fuses rescale into normalize: (x - mean/s) / (std/s).
        return values.sub_(mean * (1.0 / pixel_cfg.rescale_factor)).div_(
            std * (1.0 / pixel_cfg.rescale_factor)
        )
    # PilBackend: rescale in float64, cast to float32, then normalise.
    rescaled = (values.double() * pixel_cfg.rescale_factor).float()
    return values.copy_(rescaled).sub_(mean).div_(std)


def preprocess(
    image: PIL.Image.Image, cfg: AnyResConfig, pixel_cfg: PixelConfig | None = None
) -> AnyResPixels:
    """Base image + AnyRes tiles of ``image`` as normalised float32 tensors (see module docstring)."""
    pixel_cfg = pixel_cfg or PixelConfig()
    rgb = rgb_for_model(image)
    width, height = rgb.size
    canvas = select_best_resolution((width, height), cfg.pinpoints)
    fit = resized_size_for_fit((width, height), canvas)
    pair = _resized_pair_torch if pixel_cfg.resize_backend == "torch" else _resized_pair_pil
    fitted, base = pair(rgb, fit, cfg.tile)

    box: Box = content_box(fit, canvas)
    padded = torch.zeros(canvas.height, canvas.width, 3, dtype=torch.uint8)  # black letterbox
    padded[box.top : box.bottom, box.left : box.right] = fitted
    rows, cols, tile = canvas.height // cfg.tile, canvas.width // cfg.tile, cfg.tile
    tiles = padded.view(rows, tile, cols, tile, 3).permute(0, 2, 4, 1, 3)  # [rows, cols, 3, tile, tile] view

    values = torch.empty(1 + rows * cols, 3, tile, tile, dtype=torch.float32)
    values[0].copy_(base.permute(2, 0, 1))  # uint8 -> float32 on copy
    values[1:].view(rows, cols, 3, tile, tile).copy_(tiles)  # row-major tiles, one strided copy
    return AnyResPixels(pixel_values=_normalize_(values, pixel_cfg), image_size_hw=(height, width))


def batch_for_model(items: Sequence[AnyResPixels]) -> dict[str, torch.Tensor]:
    """Stack several images like the processors do with ``do_pad``: zero crops pad every image to the largest
    crop count; ``image_sizes`` tells the model how many crops are real."""
    if not items:
        raise ValueError("batch_for_model needs at least one image")
    crop_shapes = {tuple(item.pixel_values.shape[1:]) for item in items}
    if len(crop_shapes) != 1:
        raise ValueError(
            f"batch_for_model: images were tiled with different tile sizes {sorted(crop_shapes)}"
        )
    most = max(item.pixel_values.shape[0] for item in items)
    pixel_values = torch.zeros((len(items), most, *items[0].pixel_values.shape[1:]), dtype=torch.float32)
    for index, item in enumerate(items):
        pixel_values[index, : item.pixel_values.shape[0]] = item.pixel_values
    image_sizes = torch.tensor([list(item.image_size_hw) for item in items], dtype=torch.long)
    return {"pixel_values": pixel_values, "image_sizes": image_sizes}
