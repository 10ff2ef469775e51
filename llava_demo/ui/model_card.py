"""The one-line model card under the chat's model selector: what the selected model is and knows, and how to
serve a real checkpoint instead (issue 19: the page never said the default is a tiny model trained on
synthetic scenes)."""

from __future__ import annotations

from pathlib import Path

from llava_demo.presets import PresetError, UnknownModelError, resolve_model
from llava_demo.ui.model_choices import display_path

SERVE_REAL = (
    "For a real model, start the app with `--model` and a preset, hub id or checkpoint folder, e.g. "
    "`python app.py --model llava-v1.6-mistral-7b-hf` (the API server takes the same flag)."
)


def model_card_line(model: str, backend: str = "local") -> str:
    """Markdown: the preset's card, or what is known from the name; then how to serve a real checkpoint."""
    if backend != "local":
        return f"`{model}`, answered by the {backend} server this app forwards to."
    try:
        resolved = resolve_model(model)
    except (UnknownModelError, PresetError):
        return ""
    if resolved.preset is not None and resolved.preset.card:
        card = resolved.preset.card
    elif resolved.source == "hub":
        card = f"LLaVA-NeXT checkpoint `{resolved.checkpoint}` from the Hugging Face hub."
    else:
        folder = Path(resolved.checkpoint)
        readme = folder / "README.md"
        where = f" (model card: `{display_path(readme)}`)" if readme.is_file() else ""
        card = f"Local checkpoint `{display_path(folder)}`{where}."
    tail = f" {SERVE_REAL}" if resolved.image_only else ""
    return f"ℹ️ {card}{tail}"
