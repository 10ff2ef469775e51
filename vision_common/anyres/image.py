"""PIL-side AnyRes image operations shared by the pixel pipeline (``pixels``, "pil" backend) and the UI
rendering (``render``): RGB conversion, the letterboxed canvas, the base image and the tile crops.

Pure PIL (no torch). Resizing is PIL bicubic, which is what transformers' ``LlavaNextImageProcessorPil``
does, so ``tile_crops`` are byte-for-byte the crops that processor normalises.
"""

from __future__ import annotations

import PIL.Image

from vision_common.anyres.geometry import AnyResConfig, AnyResPlan, plan


def rgb_for_model(image: PIL.Image.Image) -> PIL.Image.Image:
    """transformers' ``convert_to_rgb`` rule, kept exact for pixel parity with its processors: transparency is
    composited onto white, other modes are ``convert("RGB")``-ed; an RGB image is returned as is (no copy).

    Not ``vision_common.images.modes.to_rgb``: that one is the upload decoder's (it rescales 16-bit and float
    images and reports what it did); images from the chat path arrive here already RGB from it. This rule is
    for raw PIL images handed to the pixel pipeline, which must match what transformers computes.
    """
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels: {image.width}x{image.height}")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_bicubic(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    if image.size == (width, height):
        return image
    return image.resize((width, height), PIL.Image.Resampling.BICUBIC)


def padded_canvas(rgb: PIL.Image.Image, anyres_plan: AnyResPlan) -> PIL.Image.Image:
    """The image scaled to fit the chosen canvas and pasted centred on black, as the encoder tiles it."""
    canvas = PIL.Image.new("RGB", anyres_plan.best_resolution, (0, 0, 0))
    fitted = resize_bicubic(rgb, *anyres_plan.resized_size)
    canvas.paste(fitted, anyres_plan.content_box[:2])
    return canvas


def base_image(rgb: PIL.Image.Image, cfg: AnyResConfig) -> PIL.Image.Image:
    """The whole image squashed to tile x tile (LLaVA resizes here instead of padding; aspect is not kept)."""
    return resize_bicubic(rgb, cfg.tile, cfg.tile)


def tile_crops(image: PIL.Image.Image, cfg: AnyResConfig) -> tuple[AnyResPlan, list[PIL.Image.Image]]:
    """The plan plus the encoder's crops as RGB images: the base image first, then the tiles row-major."""
    rgb = rgb_for_model(image)
    anyres_plan = plan(rgb.size, cfg)
    canvas = padded_canvas(rgb, anyres_plan)
    return anyres_plan, [base_image(rgb, cfg), *(canvas.crop(box) for box in anyres_plan.tile_boxes)]
