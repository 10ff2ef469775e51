"""Turning a conversation's ``ImageRef`` values into what a backend sends: PIL images or data URLs.

Every image goes through ``vision_common.images.load`` (size/format/bomb limits, EXIF rotation, RGB), so a bad
image is a ``BadRequestError`` that names the image, whichever backend serves the request, and the loader's
remarks (e.g. "animated GIF: using the first of 12 frames") become user-visible notices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from llava_demo.backends.base import BadRequestError
from vision_common.chat.conversation import ImageRef
from vision_common.images.load import ImageInputError, ImageLimits, LoadedImage, load_image, to_data_url


@dataclass(frozen=True)
class PreparedImages:
    """The decoded images in placeholder order, plus notices worth showing (each names its image)."""

    images: tuple[LoadedImage, ...]
    notices: tuple[str, ...]

    @property
    def pil(self) -> list[Image.Image]:
        return [loaded.image for loaded in self.images]


def prepare_images(refs: Sequence[ImageRef], limits: ImageLimits) -> PreparedImages:
    """Load every image or raise ``BadRequestError`` naming the first bad one (1-based, as users count)."""
    loaded: list[LoadedImage] = []
    notices: list[str] = []
    for number, ref in enumerate(refs, start=1):
        try:
            image = load_image(ref, limits)
        except ImageInputError as exc:
            raise BadRequestError(f"image {number} of {len(refs)}: {exc}") from exc
        loaded.append(image)
        notices.extend(f"image {number}: {notice}" for notice in image.notices)
    return PreparedImages(tuple(loaded), tuple(notices))


def image_data_url(ref: ImageRef, loaded: LoadedImage, image_format: str) -> str:
    """The data URL to send for one image: a caller's data URL as it came (already validated, no
    re-encoding), anything else encoded from the decoded pixels."""
    if isinstance(ref, str) and ref[:5].lower() == "data:" and not loaded.notices:
        return ref
    return to_data_url(loaded, image_format)
