"""Whether a hub model can be loaded here, known without loading or downloading it.

The app runs offline by default (``scripts/run`` sets ``HF_HUB_OFFLINE=1``), and then a hub preset that is not
in the local Hugging Face cache can only fail, once with a raw ``OSError`` after it was picked (issue 19). The
selector marks such presets unavailable with this module's reason, and a failed load becomes one sentence.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TRUE_VALUES = frozenset({"1", "on", "yes", "true"})
MAX_SENTENCE_CHARS = 300
HubProblem = Callable[[str], "str | None"]


def hub_offline(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip().lower() in TRUE_VALUES for name in OFFLINE_VARIABLES)


def in_local_cache(repo_id: str) -> bool:
    """The checkpoint's ``config.json`` is in the Hugging Face cache (the rest is checked when it loads)."""
    from huggingface_hub import try_to_load_from_cache  # lazy: only the hub presets need it

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def hub_problem(repo_id: str, *, offline: bool, cached: bool) -> str | None:
    """Why a hub checkpoint cannot be loaded now, or None when it can (cached, or downloadable)."""
    if cached or not offline:
        return None
    return (
        f"{repo_id} is not in the local Hugging Face cache and the hub is switched off (HF_HUB_OFFLINE=1); "
        f"download it once with network access (`hf download {repo_id}`) or serve a local checkpoint"
    )


def current_hub_problem(repo_id: str) -> str | None:
    """``hub_problem`` for this process's environment and cache."""
    return hub_problem(repo_id, offline=hub_offline(), cached=in_local_cache(repo_id))


def one_sentence(model: str, error: BaseException) -> str:
    """A load failure as one sentence: the model, the error's kind and its first line (libraries' messages run
    to a dozen lines of advice and URLs)."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    if len(first) > MAX_SENTENCE_CHARS:
        first = first[: MAX_SENTENCE_CHARS - 1] + "…"
    detail = f": {first}" if first else ""
    return f"{model!r} could not be loaded ({type(error).__name__}{detail})"
