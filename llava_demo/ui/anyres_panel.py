"""What the AnyRes panel shows for one image: the chosen grid drawn over it, the crops the vision encoder
sees, and the number of image tokens the prompt spends on it (llava.md §3).

The numbers come from the same ``ImageTokenCounter`` the in-process backend fits its context with (read from
the loaded processor), so the panel and the model agree; for a remote server, whose processor is not visible
from here, LLaVA-1.6 defaults are shown and the panel says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image

from llava_demo.backends.local_prompt import ImageTokenCounter
from vision_common.anyres.geometry import AnyResConfig, AnyResPlan, plan
from vision_common.anyres.render import render_grid, tile_images
from vision_common.images.limits import LoadedImage

# Wide enough to read the tile numbers, small enough to send quickly.
PANEL_MAX_WIDTH = 1000
DEFAULT_COUNTER = ImageTokenCounter(anyres=AnyResConfig(), strategy="default", has_cls=True)


@dataclass(frozen=True)
class AnyResView:
    image_name: str
    plan: AnyResPlan
    grid_picture: PIL.Image.Image
    crops: tuple[tuple[PIL.Image.Image, str], ...]
    """(crop, caption) pairs: the base image first, then the tiles row-major."""
    counter_source: str

    @property
    def token_count(self) -> int:
        return self.plan.tokens.total

    def summary(self) -> str:
        """Markdown for the panel: the count, how it splits, and where the settings come from."""
        p, t = self.plan, self.plan.tokens
        return (
            f"**{t.total:,} image tokens** for `{self.image_name}` ({p.image_size.width}x{p.image_size.height}): "
            f"{t.base:,} base + {t.grid:,} grid + {t.newline:,} row ends. "
            f"Grid {p.grid.cols}x{p.grid.rows} (cols x rows) on a {p.best_resolution.width}x"
            f"{p.best_resolution.height} canvas, {p.num_crops} crops of {p.config.tile}px. "
            f"Settings: {self.counter_source}."
        )


def counter_for(backend: Any) -> tuple[ImageTokenCounter, str]:
    """The backend's own counter when it has one (the local backend), else LLaVA-1.6 defaults."""
    counter = getattr(backend, "counter", None)
    if isinstance(counter, ImageTokenCounter):
        return counter, "read from the loaded model's processor"
    return DEFAULT_COUNTER, "LLaVA-1.6 defaults (a remote server's processor is not visible from the app)"


def anyres_view(image_path: str, loaded: LoadedImage, counter: ImageTokenCounter, source: str) -> AnyResView:
    """Lay out the AnyRes plan of ``loaded``, the decoded ``image_path`` (decoding is the caller's, once)."""
    image = loaded.image
    image_plan = plan(image.size, counter.anyres, counter.strategy, counter.has_cls)
    crops = tile_images(image, counter.anyres)
    captions = ["base: whole image"] + [
        f"tile {i} (row {(i - 1) // image_plan.grid.cols + 1}, col {(i - 1) % image_plan.grid.cols + 1})"
        for i in range(1, len(crops))
    ]
    return AnyResView(
        image_name=Path(image_path).name,
        plan=image_plan,
        grid_picture=render_grid(image, counter.anyres, max_width=PANEL_MAX_WIDTH),
        crops=tuple(zip(crops, captions)),
        counter_source=source,
    )
