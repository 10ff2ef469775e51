"""Issue 19, defect 4 of the issue: offline, hub presets missing from the local cache are offered as unavailable
with the reason, picking one says so before loading, and a failed load is one clear sentence."""

from __future__ import annotations

import pytest

from llava_demo.presets import load_presets
from llava_demo.ui.backend_pool import BackendPool, ModelUnavailableError
from llava_demo.ui.hub_cache import hub_offline, hub_problem, in_local_cache, one_sentence
from llava_demo.ui.model_choices import preset_choices
from llava_demo.ui.settings import ChatSettings

SEVEN_B = "llava-v1.6-mistral-7b-hf"
RAW_OS_ERROR = OSError(
    "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached "
    "files.\nCheck your internet connection or see how to run the library in offline mode at "
    "'https://huggingface.co/docs/transformers/installation#offline-mode'."
)


def _offline(repo_id: str) -> str | None:
    return hub_problem(repo_id, offline=True, cached=False)


def test_offline_uncached_hub_presets_are_unavailable_with_the_reason(tmp_path):
    choices = {c.value: c for c in preset_choices(load_presets(), tmp_path, hub_problem=_offline)}
    seven = choices[SEVEN_B]
    assert not seven.available
    assert seven.label == f"{SEVEN_B} (unavailable: offline and not in the local cache)"
    assert "llava-v1.6-34b-hf" in choices and not choices["llava-v1.6-34b-hf"].available
    cached = {c.value: c for c in preset_choices(load_presets(), tmp_path, hub_problem=lambda _: None)}
    assert cached[SEVEN_B].available and cached[SEVEN_B].label.endswith(
        "(hub: llava-hf/llava-v1.6-mistral-7b-hf)"
    )


def test_the_real_environment_check(monkeypatch):
    assert hub_offline({"HF_HUB_OFFLINE": "1"}) and hub_offline({"TRANSFORMERS_OFFLINE": "true"})
    assert not hub_offline({}) and not hub_offline({"HF_HUB_OFFLINE": "0"})
    assert not in_local_cache("nobody/not-a-model-anywhere")
    assert hub_problem("a/b", offline=False, cached=False) is None  # online: downloaded on first use
    assert hub_problem("a/b", offline=True, cached=True) is None


def test_picking_one_is_refused_before_loading_in_one_sentence():
    loads = []
    pool = BackendPool(ChatSettings.tiny(), lambda *a, **k: loads.append(a), hub_problem=_offline)
    with pytest.raises(ModelUnavailableError) as info:
        pool.get(SEVEN_B)
    message = str(info.value)
    assert message.startswith("llava-hf/llava-v1.6-mistral-7b-hf is not in the local Hugging Face cache")
    assert "\n" not in message and loads == []


def test_a_raw_load_error_becomes_one_sentence():
    def factory(*args, **kwargs):
        raise RAW_OS_ERROR

    pool = BackendPool(ChatSettings.tiny(), factory, hub_problem=lambda _: None)
    with pytest.raises(ModelUnavailableError) as info:
        pool.get(SEVEN_B)
    assert str(info.value) == (
        f"'{SEVEN_B}' could not be loaded (OSError: We couldn't connect to 'https://huggingface.co' to load the "
        "files, and couldn't find them in the cached files.)"
    )
    assert one_sentence("m", ValueError("x" * 500)).endswith("…)") and len(one_sentence("m", ValueError("")))
