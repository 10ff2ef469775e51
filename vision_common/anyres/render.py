"""Pictures of what AnyRes does to an image, for the UI: the tile grid over the letterboxed canvas, and the
crops the vision encoder sees. Pure PIL.

``render_grid`` lays out, left to right: the base image (whole image squashed to tile x tile) and the canvas
(image resized to fit the chosen resolution, padded with black) with the padding shaded and numbered tile
borders; a caption underneath gives the grid and the token count.
"""

from __future__ import annotations

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

from vision_common.anyres.geometry import AnyResConfig, AnyResPlan
from vision_common.anyres.image import tile_crops

GAP = 16  # px between the base image and the canvas, and around the composite
CAPTION_FONT_SIZE = 14
CAPTION_HEIGHT = 56  # two caption lines plus margins
BACKGROUND = (255, 255, 255)
TILE_BORDER = (255, 64, 32)
BASE_BORDER = (32, 96, 255)
PADDING_SHADE = (
    255,
    200,
    0,
    110,
)  # translucent amber: visible on black padding and never mistaken for content
TEXT = (20, 20, 20)
MIN_TILE_DISPLAY = 112  # tiny test configs (tile 32) are zoomed so borders and numbers stay legible


def tile_images(image: PIL.Image.Image, cfg: AnyResConfig) -> list[PIL.Image.Image]:
    """The encoder's crops as RGB images, base first then tiles row-major (``len == plan.num_crops``)."""
    return tile_crops(image, cfg)[1]


def caption(anyres_plan: AnyResPlan) -> str:
    grid, tokens = anyres_plan.grid, anyres_plan.tokens
    canvas = anyres_plan.best_resolution
    return (
        f"grid {grid.cols}x{grid.rows} (cols x rows) on a {canvas.width}x{canvas.height} canvas, "
        f"{anyres_plan.num_crops} crops (base + {anyres_plan.num_tiles} tiles)\n"
        f"{tokens.total:,} image tokens = {tokens.base:,} base + "
        f"{tokens.grid:,} grid + {tokens.newline:,} newline"
    )


def _font(size: int) -> PIL.ImageFont.ImageFont | PIL.ImageFont.FreeTypeFont:
    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return PIL.ImageFont.load_default()


def _shade_padding(canvas: PIL.Image.Image, anyres_plan: AnyResPlan) -> PIL.Image.Image:
    """Overlay the letterbox strips (the canvas minus the content box) with a translucent colour."""
    overlay = PIL.Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = PIL.ImageDraw.Draw(overlay)
    left, top, right, bottom = anyres_plan.content_box
    width, height = canvas.size
    for box in (
        (0, 0, width, top),
        (0, bottom, width, height),
        (0, top, left, bottom),
        (right, top, width, bottom),
    ):
        if box[2] > box[0] and box[3] > box[1]:
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=PADDING_SHADE)
    return PIL.Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")


def render_grid(image: PIL.Image.Image, cfg: AnyResConfig, max_width: int = 1600) -> PIL.Image.Image:
    """Composite picture of the AnyRes plan for ``image`` (see module docstring), at most ``max_width`` wide."""
    if max_width < 64:
        raise ValueError(f"render_grid: max_width must be at least 64 px, got {max_width}")
    anyres_plan, crops = tile_crops(image, cfg)
    base, tiles = crops[0], crops[1:]
    canvas = PIL.Image.new("RGB", anyres_plan.best_resolution)
    for box, tile in zip(anyres_plan.tile_boxes, tiles):
        canvas.paste(tile, box[:2])
    canvas = _shade_padding(canvas, anyres_plan)
    zoom = -(-MIN_TILE_DISPLAY // cfg.tile)  # ceil; 1 for real tile sizes
    if zoom > 1:
        base = base.resize((base.width * zoom, base.height * zoom), PIL.Image.Resampling.NEAREST)
        canvas = canvas.resize((canvas.width * zoom, canvas.height * zoom), PIL.Image.Resampling.NEAREST)

    display_tile = cfg.tile * zoom
    label_font = _font(max(12, display_tile // 12))
    draw = PIL.ImageDraw.Draw(canvas)
    line = max(2, display_tile // 112)
    for index, box in enumerate(anyres_plan.tile_boxes, start=1):
        left, top, right, bottom = (coordinate * zoom for coordinate in box)
        draw.rectangle((left, top, right - 1, bottom - 1), outline=TILE_BORDER, width=line)
        draw.text((left + 3 * line, top + 2 * line), str(index), fill=TILE_BORDER, font=label_font)

    caption_font = _font(CAPTION_FONT_SIZE)
    text = caption(anyres_plan)
    text_width = max(caption_font.getlength(part) for part in text.split("\n"))
    width = max(GAP + base.width + GAP + canvas.width + GAP, 2 * GAP + int(text_width) + 1)
    height = GAP + max(base.height, canvas.height) + CAPTION_HEIGHT
    sheet = PIL.Image.new("RGB", (width, height), BACKGROUND)
    sheet.paste(base, (GAP, GAP))
    sheet.paste(canvas, (2 * GAP + base.width, GAP))
    draw = PIL.ImageDraw.Draw(sheet)
    draw.rectangle((GAP - 1, GAP - 1, GAP + base.width, GAP + base.height), outline=BASE_BORDER, width=line)
    draw.text((GAP + 3 * line, GAP + 2 * line), "base", fill=BASE_BORDER, font=label_font)
    text_top = GAP + max(base.height, canvas.height) + GAP // 2
    draw.multiline_text((GAP, text_top), text, fill=TEXT, font=caption_font, spacing=4)

    if sheet.width > max_width:
        # Display-only downscale: the caption may blur, the geometry stays proportional.
        scale = max_width / sheet.width
        sheet = sheet.resize((max_width, max(1, round(sheet.height * scale))), PIL.Image.Resampling.LANCZOS)
    return sheet
